using System.Net.Sockets;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using Telemetry.Protos;

namespace Telemetry.EndToEnd.Tests;

public sealed class GrpcIngestTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private TelemetryServer Server => fixture.Server;

    [Fact]
    public async Task Stream_acks_every_batch_in_order_after_commit_and_the_trend_shows_them()
    {
        var token = await Server.ProvisionAsync("grpc-phone", "p-grpc-1");
        var start = Devices.RecentMinute();
        using var channel = GrpcChannel.ForAddress($"http://127.0.0.1:{Server.GrpcPort}");
        var client = new Ingest.IngestClient(channel);
        using var call = client.Stream(new Metadata { { "authorization", $"Bearer {token}" } });

        VitalBatch? last = null;
        for (ulong seq = 1; seq <= 10; seq++)
        {
            var values = Enumerable.Range(0, 6).Select(i => 60.0 + (double)seq + i).ToArray();
            last = Devices.ProtobufBatch(seq, start.AddSeconds((double)(seq - 1) * 6), "heart_rate", "/min", values);
            if (seq == 10)
            {
                // With a reading of a vital the server does not know, refused as it is read.
                last.Series.Add(new VitalSeries { Kind = "mood", TimeDeltasMs = { 0 }, Values = { 3 } });
            }

            await call.RequestStream.WriteAsync(last);
        }

        // The last batch again, as a device does when it saw no ack (its unknown reading refused again); then the first
        // batch's times with other values, refused as conflicting with what is stored (the first values stand).
        await call.RequestStream.WriteAsync(last!);
        await call.RequestStream.WriteAsync(Devices.ProtobufBatch(11, start, "heart_rate", "/min", [90, 91, 92, 93, 94, 95]));

        // A batch of nothing but an implausible reading, twice (its ack lost): refused both times, as nothing was stored.
        var implausible = Devices.ProtobufBatch(12, start.AddSeconds(50), "heart_rate", "/min", [400]);
        await call.RequestStream.WriteAsync(implausible);
        await call.RequestStream.WriteAsync(implausible);
        await call.RequestStream.CompleteAsync();
        var acks = new List<IngestAck>();
        await foreach (var ack in call.ResponseStream.ReadAllAsync())
        {
            acks.Add(ack);
        }

        Assert.Equal(Enumerable.Range(1, 10).Select(i => (ulong)i).Append(10UL).Append(11UL).Append(12UL).Append(12UL), acks.Select(a => a.Seq));
        Assert.All(acks.Take(10), ack => Assert.Equal(AckStatus.Committed, ack.Status));
        Assert.All(acks.Take(10), ack => Assert.Equal(6u, ack.Accepted));
        Assert.Equal((AckStatus.Duplicate, 1u, 1u), (acks[10].Status, acks[9].Rejected, acks[10].Rejected));
        Assert.Contains("unknown", acks[10].Reason, StringComparison.OrdinalIgnoreCase);
        Assert.Equal((AckStatus.Rejected, 6u, 0u), (acks[11].Status, acks[11].Rejected, acks[11].Accepted));
        Assert.Contains("another value already stored", acks[11].Reason, StringComparison.Ordinal);
        Assert.Equal((AckStatus.Rejected, 1u, AckStatus.Rejected, 1u), (acks[12].Status, acks[12].Rejected, acks[13].Status, acks[13].Rejected));
        Assert.Equal(acks[12].Reason, acks[13].Reason);
        var point = Assert.Single((await Server.TrendAsync("p-grpc-1", "heart_rate", start, start.AddMinutes(1), count: 60)).Points);
        Assert.Equal(60, point.Count);
        Assert.Equal(61, point.Min);
        Assert.Equal(75, point.Max);
    }

    [Fact]
    public async Task Stream_without_a_valid_token_is_unauthenticated()
    {
        await Server.ProvisionAsync("grpc-refused", "p-grpc-2");
        using var channel = GrpcChannel.ForAddress($"http://127.0.0.1:{Server.GrpcPort}");
        var client = new Ingest.IngestClient(channel);

        foreach (var headers in new[] { new Metadata(), new Metadata { { "authorization", "Bearer grpc-refused." + new string('0', 64) } } })
        {
            using var call = client.Stream(headers);
            await call.RequestStream.WriteAsync(Devices.ProtobufBatch(1, Devices.RecentMinute(), "heart_rate", "", 70));
            var error = await Assert.ThrowsAsync<RpcException>(async () => await call.ResponseStream.MoveNext());
            Assert.Equal(StatusCode.Unauthenticated, error.StatusCode);
        }

        Assert.Empty((await Server.TrendAsync("p-grpc-2", "heart_rate", Devices.RecentMinute(), Devices.RecentMinute(-1))).Points);
    }

    [Fact]
    public async Task A_batch_that_is_not_protobuf_is_refused_alone_with_its_reason_and_counted()
    {
        var token = await Server.ProvisionAsync("grpc-garbage", "p-grpc-5");
        var start = Devices.RecentMinute();
        using var channel = GrpcChannel.ForAddress($"http://127.0.0.1:{Server.GrpcPort}");

        // The stream's method with requests as raw bytes, to send what no protobuf library would write.
        var raw = new Method<byte[], IngestAck>(
            MethodType.DuplexStreaming,
            "telemetry.v1.Ingest",
            "Stream",
            Marshallers.Create<byte[]>(bytes => bytes, bytes => bytes),
            Marshallers.Create<IngestAck>(ack => ack.ToByteArray(), IngestAck.Parser.ParseFrom));
        using var call = channel.CreateCallInvoker().AsyncDuplexStreamingCall(raw, null, new CallOptions(new Metadata { { "authorization", $"Bearer {token}" } }));
        var before = await MalformedAsync();
        var acksBefore = await CountedAsync("telemetry_acks_sent_total{", "protocol=\"grpc\"");

        await call.RequestStream.WriteAsync([0x1A, 0x40, 0x0A, 0x02]);
        await call.RequestStream.WriteAsync(Devices.ProtobufBatch(2, start, "heart_rate", "", 71).ToByteArray());
        await call.RequestStream.CompleteAsync();
        var acks = await call.ResponseStream.ReadAllAsync().ToListAsync();

        Assert.Equal([AckStatus.Rejected, AckStatus.Committed], acks.Select(ack => ack.Status));
        Assert.StartsWith("malformed protobuf VitalBatch: ", acks[0].Reason, StringComparison.Ordinal);
        Assert.Equal(2UL, acks[1].Seq);
        Assert.Equal(before + 1, await MalformedAsync());
        Assert.Equal(acksBefore + 1, await CountedAsync("telemetry_acks_sent_total{", "protocol=\"grpc\""));
        Assert.Equal(71, Assert.Single((await Server.TrendAsync("p-grpc-5", "heart_rate", start, start.AddMinutes(1))).Points).Min);
    }

    [Fact]
    public async Task A_batch_with_mismatched_columns_is_rejected_with_its_reason()
    {
        var token = await Server.ProvisionAsync("grpc-broken", "p-grpc-3");
        using var channel = GrpcChannel.ForAddress($"http://127.0.0.1:{Server.GrpcPort}");
        using var call = new Ingest.IngestClient(channel).Stream(new Metadata { { "authorization", $"Bearer {token}" } });
        var broken = Devices.ProtobufBatch(1, Devices.RecentMinute(), "heart_rate", "", 70, 71);
        broken.Series[0].TimeDeltasMs.RemoveAt(1);

        await call.RequestStream.WriteAsync(broken);
        await call.RequestStream.CompleteAsync();
        Assert.True(await call.ResponseStream.MoveNext());

        Assert.Equal(AckStatus.Rejected, call.ResponseStream.Current.Status);
        Assert.Contains("1 time deltas but 2 values", call.ResponseStream.Current.Reason);
    }

    [Fact]
    public async Task A_device_whose_connection_drops_mid_stream_ends_its_stream_quietly_and_can_stream_again()
    {
        // A server of its own, so that its log holds this device's streams alone, with the stream's end logged.
        await using var server = new TelemetryServer(new Dictionary<string, string> { ["Logging__LogLevel__Telemetry.Ingest.Grpc"] = "Debug" });
        await server.StartAsync();
        var token = await server.ProvisionAsync("grpc-dropping", "p-grpc-drop");
        var start = Devices.RecentMinute();
        var headers = new Metadata { { "authorization", $"Bearer {token}" } };

        // The device's one connection, its socket at hand, closed as a network that goes away closes it: a reset, no
        // END_STREAM, no goodbye, while the server waits for the next batch.
        Socket? socket = null;
        using var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (context, cancellationToken) =>
            {
                socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                await socket.ConnectAsync(context.DnsEndPoint, cancellationToken);
                return new NetworkStream(socket, ownsSocket: true);
            },
        };
        using (var channel = GrpcChannel.ForAddress($"http://127.0.0.1:{server.GrpcPort}", new GrpcChannelOptions { HttpHandler = handler }))
        {
            using var call = new Ingest.IngestClient(channel).Stream(headers);
            await call.RequestStream.WriteAsync(Devices.ProtobufBatch(1, start, "heart_rate", "/min", 70));
            Assert.True(await call.ResponseStream.MoveNext());
            Assert.Equal(AckStatus.Committed, call.ResponseStream.Current.Status);
            socket!.LingerState = new LingerOption(true, 0);
            socket.Close();
        }

        var output = await server.OutputWhenAsync("Device grpc-dropping's gRPC stream ended with its connection");
        Assert.Contains("Device grpc-dropping's gRPC stream ended with its connection", output);
        Assert.DoesNotContain("Error when executing service method", output);

        // The device connects again and goes on; what it had acked is stored once.
        using var again = GrpcChannel.ForAddress($"http://127.0.0.1:{server.GrpcPort}");
        using var next = new Ingest.IngestClient(again).Stream(headers);
        await next.RequestStream.WriteAsync(Devices.ProtobufBatch(2, start.AddSeconds(1), "heart_rate", "/min", 72));
        await next.RequestStream.CompleteAsync();
        Assert.True(await next.ResponseStream.MoveNext());
        Assert.Equal(AckStatus.Committed, next.ResponseStream.Current.Status);
        Assert.Equal(2, Assert.Single((await server.TrendAsync("p-grpc-drop", "heart_rate", start, start.AddMinutes(1), count: 2)).Points).Count);
    }

    private Task<long> MalformedAsync() => CountedAsync("telemetry_payloads_rejected_total{", "protocol=\"grpc\"", "reason=\"malformed\"");

    /// <summary>A counter's value in <c>/metrics</c>: the first line of <paramref name="metric"/> holding every one of <paramref name="labels"/>.</summary>
    private async Task<long> CountedAsync(string metric, params string[] labels)
    {
        var metrics = await Server.Http.GetStringAsync("/metrics");
        var line = metrics.Split('\n').FirstOrDefault(line => line.StartsWith(metric, StringComparison.Ordinal)
            && labels.All(label => line.Contains(label, StringComparison.Ordinal)));
        return line is null ? 0 : long.Parse(line[(line.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
    }
}
