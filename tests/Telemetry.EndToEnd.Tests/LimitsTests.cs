using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using Grpc.Core;
using Grpc.Net.Client;
using MQTTnet;
using Telemetry.Protos;

namespace Telemetry.EndToEnd.Tests;

/// <summary>Limits on size, rate and streams answer with the protocol's own words and store nothing they refuse.</summary>
public sealed class LimitsTests(LimitsTests.LimitedServer fixture) : IClassFixture<LimitsTests.LimitedServer>
{
    private TelemetryServer Server => fixture.Server;

    [Fact]
    public async Task An_mqtt_device_over_its_message_rate_gets_quota_exceeded_and_the_refused_message_is_not_stored()
    {
        var token = await Server.ProvisionAsync("limit-mqtt-rate", "p-limit-1");
        using var client = await Devices.ConnectMqttAsync(Server, "limit-mqtt-rate", token);
        var start = Devices.RecentMinute();

        var results = new List<MqttClientPublishResult>();
        for (var i = 0; i < 12; i++)
        {
            results.Add(await Devices.PublishAsync(client, "devices/limit-mqtt-rate/vitals", Devices.JsonHeartRates((ulong)i + 1, start.AddSeconds(i), 60 + i)));
        }

        var refused = results.Where(r => r.ReasonCode == MqttClientPublishReasonCode.QuotaExceeded).ToList();
        Assert.NotEmpty(refused);
        Assert.All(refused, r => Assert.Contains("messages a second", r.ReasonString));
        var acked = results.Count(r => r.ReasonCode == MqttClientPublishReasonCode.Success);
        Assert.Equal(acked, (await Server.TrendAsync("p-limit-1", "heart_rate", start, start.AddMinutes(1), count: acked)).TotalCount);
    }

    [Fact]
    public async Task With_one_publish_in_flight_per_connection_each_is_committed_before_the_next_is_read()
    {
        var token = await Server.ProvisionAsync("limit-mqtt-window", "p-limit-8");
        using var client = await Devices.ConnectMqttAsync(Server, "limit-mqtt-window", token);
        var start = Devices.RecentMinute();
        var before = await Server.CommitCountsAsync();

        // Four at once (the device's burst allowance), none waiting for another's PUBACK.
        var results = await Task.WhenAll(Enumerable.Range(0, 4).Select(i =>
            Devices.PublishAsync(client, "devices/limit-mqtt-window/vitals", Devices.JsonHeartRates((ulong)i + 1, start.AddSeconds(i), 60 + i))));

        Assert.All(results, result => Assert.Equal(MqttClientPublishReasonCode.Success, result.ReasonCode));
        var after = await Eventually.ReadAsync(Server.CommitCountsAsync, counts => counts.Batches >= before.Batches + 4);
        Assert.Equal((4L, 4L), (after.Batches - before.Batches, after.Commits - before.Commits));
    }

    [Fact]
    public async Task An_mqtt_payload_over_the_size_limit_is_refused_with_its_size()
    {
        var token = await Server.ProvisionAsync("limit-mqtt-size", "p-limit-2");
        using var client = await Devices.ConnectMqttAsync(Server, "limit-mqtt-size", token);

        var result = await Devices.PublishAsync(client, "devices/limit-mqtt-size/vitals", new byte[4_096]);

        Assert.Equal(MqttClientPublishReasonCode.PayloadFormatInvalid, result.ReasonCode);
        Assert.Contains("exceeds the limit of 2048 bytes", result.ReasonString);
    }

    [Theory]
    [InlineData("tcp")]
    [InlineData("websocket")]
    public async Task An_mqtt_5_packet_far_over_the_limit_is_refused_from_its_header_with_packet_too_large(string transport)
    {
        var token = await Server.ProvisionAsync($"limit-mqtt-huge-{transport}", $"p-limit-7-{transport}");
        var options = transport == "tcp"
            ? Devices.MqttOptions(Server.MqttPort, $"limit-mqtt-huge-{transport}", $"limit-mqtt-huge-{transport}", token)
            : new MqttClientOptionsBuilder()
                .WithWebSocketServer(ws => ws.WithUri($"ws://127.0.0.1:{Server.HttpPort}/mqtt"))
                .WithClientId($"limit-mqtt-huge-{transport}")
                .WithCredentials($"limit-mqtt-huge-{transport}", token)
                .WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V500);
        using var client = await Devices.ConnectMqttAsync(options.Build());
        var refusedBefore = await PacketsTooLargeAsync();
        var disconnected = new TaskCompletionSource<MqttClientDisconnectedEventArgs>();
        client.DisconnectedAsync += args =>
        {
            disconnected.TrySetResult(args);
            return Task.CompletedTask;
        };

        await Assert.ThrowsAnyAsync<MQTTnet.Exceptions.MqttCommunicationException>(
            () => Devices.PublishAsync(client, $"devices/limit-mqtt-huge-{transport}/vitals", new byte[200_000]));

        // Over WebSocket the server sends the same DISCONNECT, but a client still sending the packet may see the
        // connection close before it reads it; the refusal is counted either way.
        var args = await disconnected.Task.WaitAsync(TimeSpan.FromSeconds(10));
        if (transport == "tcp")
        {
            Assert.Equal(MqttClientDisconnectReason.PacketTooLarge, args.Reason);
        }

        Assert.Equal(refusedBefore + 1, await PacketsTooLargeAsync());
    }

    /// <summary>How many MQTT packets the server has refused as too large, by its metrics.</summary>
    private async Task<double> PacketsTooLargeAsync() =>
        (await Server.Http.GetStringAsync("/metrics")).Split('\n')
            .Where(line => line.StartsWith("telemetry_payloads_rejected_total{", StringComparison.Ordinal) && line.Contains("reason=\"packet_too_large\"", StringComparison.Ordinal))
            .Sum(line => double.Parse(line[(line.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture));

    [Fact]
    public async Task A_grpc_message_over_the_size_limit_ends_the_stream_with_resource_exhausted()
    {
        var token = await Server.ProvisionAsync("limit-grpc-size", "p-limit-3");
        using var channel = GrpcChannel.ForAddress($"http://127.0.0.1:{Server.GrpcPort}");
        using var call = new Ingest.IngestClient(channel).Stream(new Metadata { { "authorization", $"Bearer {token}" } });

        await call.RequestStream.WriteAsync(Devices.ProtobufBatch(1, Devices.RecentMinute(), "heart_rate", "", [.. Enumerable.Repeat(70.0, 600)]));

        var error = await Assert.ThrowsAsync<RpcException>(async () => await call.ResponseStream.MoveNext());
        Assert.Equal(StatusCode.ResourceExhausted, error.StatusCode);

        // Counted as the other ways in count theirs, and told in the device's reject log.
        Assert.Matches(@"telemetry_payloads_rejected_total\{[^}]*protocol=""grpc""[^}]*reason=""too_large""[^}]*\} [1-9]", await Server.Http.GetStringAsync("/metrics"));
        Assert.Contains("a message over the limit of 2048 bytes", await Server.Http.GetStringAsync("/api/devices/limit-grpc-size/rejects"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_grpc_device_over_its_rate_gets_its_acks_and_then_resource_exhausted()
    {
        var token = await Server.ProvisionAsync("limit-grpc-rate", "p-limit-4");
        var start = Devices.RecentMinute();
        using var channel = GrpcChannel.ForAddress($"http://127.0.0.1:{Server.GrpcPort}");
        using var call = new Ingest.IngestClient(channel).Stream(new Metadata { { "authorization", $"Bearer {token}" } });

        for (ulong seq = 1; seq <= 12; seq++)
        {
            await call.RequestStream.WriteAsync(Devices.ProtobufBatch(seq, start.AddSeconds((double)seq), "heart_rate", "", 70));
        }

        var acks = new List<IngestAck>();
        var error = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            await foreach (var ack in call.ResponseStream.ReadAllAsync())
            {
                acks.Add(ack);
            }
        });

        Assert.Equal(StatusCode.ResourceExhausted, error.StatusCode);
        Assert.InRange(acks.Count, 1, 11);
        Assert.All(acks, ack => Assert.Equal(AckStatus.Committed, ack.Status));
        Assert.Equal(acks.Count, (await Server.TrendAsync("p-limit-4", "heart_rate", start, start.AddMinutes(1), count: acks.Count)).TotalCount);
        Assert.Contains("batches a second", await Server.Http.GetStringAsync("/api/devices/limit-grpc-rate/rejects"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_newer_grpc_stream_of_a_device_ends_the_older_one()
    {
        var token = await Server.ProvisionAsync("limit-grpc-twice", "p-limit-5");
        using var channel = GrpcChannel.ForAddress($"http://127.0.0.1:{Server.GrpcPort}");
        var client = new Ingest.IngestClient(channel);
        var headers = new Metadata { { "authorization", $"Bearer {token}" } };
        using var first = client.Stream(headers);
        await first.RequestStream.WriteAsync(Devices.ProtobufBatch(1, Devices.RecentMinute(), "heart_rate", "", 70));
        Assert.True(await first.ResponseStream.MoveNext().WaitAsync(TimeSpan.FromSeconds(10)), "first ack");

        using var second = client.Stream(headers);
        await second.RequestStream.WriteAsync(Devices.ProtobufBatch(2, Devices.RecentMinute(), "heart_rate", "", 71)).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(await second.ResponseStream.MoveNext().WaitAsync(TimeSpan.FromSeconds(10)), "second ack");

        var error = await Assert.ThrowsAsync<RpcException>(async () => await first.ResponseStream.MoveNext().WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(StatusCode.Aborted, error.StatusCode);
    }

    [Fact]
    public async Task A_device_over_its_upload_rate_gets_429_with_retry_after()
    {
        var token = await Server.ProvisionAsync("limit-upload", "p-limit-6");
        async Task<HttpResponseMessage> UploadAsync(string contentType = "application/x-ndjson")
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/api/devices/limit-upload/readings")
            {
                Content = new StringContent($$"""{"kind":"heart_rate","time":"{{Devices.RecentMinute():O}}","value":70}""" + "\n"),
            };
            request.Content.Headers.ContentType = new MediaTypeHeaderValue(contentType);
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
            using var client = new HttpClient { BaseAddress = Server.Http.BaseAddress };
            return await client.SendAsync(request);
        }

        // An upload in a format not taken reads nothing and takes nothing from the allowance (one a minute here).
        using var unsupported = await UploadAsync("text/plain");
        using var first = await UploadAsync();
        using var second = await UploadAsync();

        Assert.Equal(HttpStatusCode.UnsupportedMediaType, unsupported.StatusCode);
        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        Assert.Equal(HttpStatusCode.TooManyRequests, second.StatusCode);
        Assert.Equal(TimeSpan.FromSeconds(60), second.Headers.RetryAfter?.Delta);
    }

    [Fact]
    public async Task A_gzip_upload_that_expands_past_the_upload_limit_gets_413()
    {
        var token = await Server.ProvisionAsync("limit-upload-gzip", "p-limit-7");
        var line = $$"""{"kind":"heart_rate","time":"{{Devices.RecentMinute():O}}","value":70}""" + "\n";
        var body = BulkUploadTests.Gzip(System.Text.Encoding.UTF8.GetBytes(string.Concat(Enumerable.Repeat(line, 20_000))));
        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/devices/limit-upload-gzip/readings") { Content = new ByteArrayContent(body) };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/x-ndjson");
        request.Content.Headers.ContentEncoding.Add("gzip");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        using var client = new HttpClient { BaseAddress = Server.Http.BaseAddress };

        using var response = await client.SendAsync(request);

        // Far under the 64 KiB limit as sent, over a megabyte once expanded.
        Assert.InRange(body.Length, 1, 65_536);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
    }

    [Fact]
    public async Task Connections_over_the_servers_limit_are_closed_at_once_and_counted()
    {
        await using var server = await TelemetryServer.StartNewAsync(new Dictionary<string, string> { ["Telemetry__Server__MaxConnections"] = "4" });
        var sockets = new List<TcpClient>();
        var closed = 0;
        bool httpRefused;
        try
        {
            for (var i = 0; i < 8; i++)
            {
                var socket = new TcpClient();
                await socket.ConnectAsync(IPAddress.Loopback, server.MqttPort);
                sockets.Add(socket);
                using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(1));
                try
                {
                    // A connection over the limit is closed by the server; one within it waits for the device's CONNECT.
                    if (await socket.GetStream().ReadAsync(new byte[1], wait.Token) == 0)
                    {
                        closed++;
                    }
                }
                catch (OperationCanceledException)
                {
                    // Still open.
                }
                catch (IOException)
                {
                    closed++;
                }
            }

            // The limit is the server's, over every listener: with it held over MQTT, a new HTTP connection is closed too.
            using var other = new HttpClient { BaseAddress = server.Http.BaseAddress, Timeout = TimeSpan.FromSeconds(5) };
            httpRefused = await Record.ExceptionAsync(() => other.GetAsync("/healthz")) is HttpRequestException;
        }
        finally
        {
            sockets.ForEach(socket => socket.Dispose());
        }

        // Four at most are held (the test's own HTTP connection may be one of them).
        Assert.InRange(closed, 4, 8);
        Assert.True(httpRefused, "an HTTP connection was taken while MQTT connections held the server's limit");
        var metrics = await Eventually.ReadAsync(MetricsAsync, text => text.Contains("telemetry_connections_rejected", StringComparison.Ordinal));
        Assert.Matches(@"telemetry_connections_rejected_total\S*\{[^}]*\} ([5-9]|\d\d+)\n", metrics);

        // Read once the closed sockets have left the count.
        async Task<string> MetricsAsync()
        {
            try
            {
                return await server.Http.GetStringAsync("/metrics");
            }
            catch (HttpRequestException)
            {
                return string.Empty;
            }
        }
    }

    /// <summary>A server with small limits, so tests reach them quickly.</summary>
    public sealed class LimitedServer : IAsyncLifetime
    {
        public TelemetryServer Server { get; private set; } = null!;

        public async Task InitializeAsync() => Server = await TelemetryServer.StartNewAsync(new Dictionary<string, string>
        {
            ["Telemetry__Ingest__MaxMessagesPerSecondPerDevice"] = "2",
            ["Telemetry__Ingest__MaxUploadsPerMinutePerDevice"] = "1",
            ["Telemetry__Ingest__MaxMessageBytes"] = "2048",
            ["Telemetry__Ingest__MaxInFlightPublishesPerConnection"] = "1",
            ["Telemetry__Ingest__MaxUploadBytes"] = "65536",
        });

        public async Task DisposeAsync() => await Server.DisposeAsync();
    }
}
