using System.Net.Http.Json;
using MQTTnet;
using MQTTnet.Formatter;

namespace Telemetry.EndToEnd.Tests;

public sealed class MqttIngestTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private TelemetryServer Server => fixture.Server;

    [Fact]
    public async Task Qos1_publish_is_acked_and_its_readings_come_back_in_the_trend()
    {
        var token = await Server.ProvisionAsync("mqtt-watch-1", "p-mqtt-1");
        using var client = await Devices.ConnectMqttAsync(Server, "mqtt-watch-1", token);
        var start = Devices.RecentMinute();

        var result = await Devices.PublishAsync(client, "devices/mqtt-watch-1/vitals", Devices.JsonHeartRates(1, start, 60, 70, 80, 90));

        Assert.Equal(MqttClientPublishReasonCode.Success, result.ReasonCode);
        var trend = await Server.TrendAsync("p-mqtt-1", "heart_rate", start, start.AddMinutes(1), count: 4);
        var point = Assert.Single(trend.Points);
        Assert.Equal(start, point.Start);
        Assert.Equal(4, point.Count);
        Assert.Equal(60, point.Min);
        Assert.Equal(90, point.Max);
        Assert.Equal(75, point.Mean);
        Assert.Equal("/min", trend.Unit);
    }

    [Fact]
    public async Task The_metrics_give_each_database_files_write_ahead_log()
    {
        var metrics = await Server.Http.GetStringAsync("/metrics");

        Assert.Matches(@"telemetry_duckdb_wal_size_bytes\{[^}]*file=""telemetry\.duckdb""[^}]*\} \d+", metrics);
        Assert.Matches(@"telemetry_duckdb_wal_size_bytes\{[^}]*file=""telemetry\.readings-2\.duckdb""[^}]*\} \d+", metrics);
        Assert.Matches(@"telemetry_duckdb_wal_size_bytes\{[^}]*file=""telemetry\.readings-1\.duckdb""[^}]*\} \d+", metrics);
    }

    [Fact]
    public async Task The_metrics_give_what_holds_duckdbs_memory()
    {
        var metrics = await Server.Http.GetStringAsync("/metrics");

        Assert.Matches(@"telemetry_duckdb_memory_size_bytes\{[^}]*tag=""[a-z_]+""[^}]*\} [1-9]\d*", metrics);
    }

    [Fact]
    public async Task Mqtt_over_websocket_at_slash_mqtt_is_acked_after_commit()
    {
        var token = await Server.ProvisionAsync("mqtt-ws", "p-mqtt-ws");
        using var client = new MqttClientFactory().CreateMqttClient();
        var connected = await client.ConnectAsync(new MqttClientOptionsBuilder()
            .WithWebSocketServer(ws => ws.WithUri($"ws://127.0.0.1:{Server.HttpPort}/mqtt"))
            .WithClientId("mqtt-ws")
            .WithCredentials("mqtt-ws", token)
            .WithProtocolVersion(MqttProtocolVersion.V500)
            .Build());
        Assert.Equal(MqttClientConnectResultCode.Success, connected.ResultCode);
        var start = Devices.RecentMinute();

        var result = await Devices.PublishAsync(client, "devices/mqtt-ws/vitals", Devices.JsonHeartRates(1, start, 66, 68));

        Assert.Equal(MqttClientPublishReasonCode.Success, result.ReasonCode);
        Assert.Equal(67, Assert.Single((await Server.TrendAsync("p-mqtt-ws", "heart_rate", start, start.AddMinutes(1), count: 2)).Points).Mean);
    }

    [Fact]
    public async Task A_device_over_websocket_hears_why_it_is_disconnected()
    {
        var token = await Server.ProvisionAsync("mqtt-ws-revoked", "p-mqtt-ws-revoked");
        using var client = new MqttClientFactory().CreateMqttClient();
        var ended = new TaskCompletionSource<MqttClientDisconnectedEventArgs>(TaskCreationOptions.RunContinuationsAsynchronously);
        client.DisconnectedAsync += args =>
        {
            ended.TrySetResult(args);
            return Task.CompletedTask;
        };
        await client.ConnectAsync(new MqttClientOptionsBuilder()
            .WithWebSocketServer(ws => ws.WithUri($"ws://127.0.0.1:{Server.HttpPort}/mqtt"))
            .WithClientId("mqtt-ws-revoked")
            .WithCredentials("mqtt-ws-revoked", token)
            .WithProtocolVersion(MqttProtocolVersion.V500)
            .Build());

        using var revoked = await Server.Http.DeleteAsync("/api/devices/mqtt-ws-revoked/token");

        Assert.Equal(System.Net.HttpStatusCode.OK, revoked.StatusCode);
        Assert.Equal(MqttClientDisconnectReason.NotAuthorized, (await ended.Task.WaitAsync(TimeSpan.FromSeconds(10))).Reason);
    }

    [Fact]
    public async Task A_large_batch_over_websocket_is_acked_after_commit()
    {
        var token = await Server.ProvisionAsync("mqtt-ws-large", "p-mqtt-ws-large");
        using var client = new MqttClientFactory().CreateMqttClient();
        await client.ConnectAsync(new MqttClientOptionsBuilder()
            .WithWebSocketServer(ws => ws.WithUri($"ws://127.0.0.1:{Server.HttpPort}/mqtt"))
            .WithClientId("mqtt-ws-large")
            .WithCredentials("mqtt-ws-large", token)
            .WithProtocolVersion(MqttProtocolVersion.V500)
            .Build());
        var start = Devices.RecentMinute(30);
        var payload = Devices.JsonHeartRates(1, start, [.. Enumerable.Range(0, 1_500).Select(i => 60.0 + (i % 60))]);
        Assert.True(payload.Length > 100_000, $"{payload.Length} bytes");

        var result = await Devices.PublishAsync(client, "devices/mqtt-ws-large/vitals", payload).WaitAsync(TimeSpan.FromSeconds(20));

        Assert.Equal(MqttClientPublishReasonCode.Success, result.ReasonCode);
        Assert.Equal(1_500, (await Server.TrendAsync("p-mqtt-ws-large", "heart_rate", start, start.AddMinutes(30), count: 1_500)).TotalCount);
    }

    [Fact]
    public async Task Mqtt_311_device_publishes_protobuf_with_units_converted()
    {
        var token = await Server.ProvisionAsync("mqtt-thermo", "p-mqtt-2");
        using var client = await Devices.ConnectMqttAsync(Server, "mqtt-thermo", token, MqttProtocolVersion.V311);
        var start = Devices.RecentMinute();

        var batch = Devices.ProtobufBatch(1, start, "8310-5", "[degF]", 98.6, 100.4);
        var result = await Devices.PublishAsync(client, "devices/mqtt-thermo/vitals", batch.ToBytes());

        Assert.True(result.IsSuccess);
        var trend = await Server.TrendAsync("p-mqtt-2", "body_temperature", start, start.AddMinutes(1), count: 2);
        var point = Assert.Single(trend.Points);
        Assert.Equal("Cel", trend.Unit);
        Assert.Equal(37, point.Min, precision: 6);
        Assert.Equal(38, point.Max, precision: 6);
    }

    [Fact]
    public async Task Resent_batch_is_acked_but_not_stored_twice()
    {
        var token = await Server.ProvisionAsync("mqtt-resender", "p-mqtt-3");
        using var client = await Devices.ConnectMqttAsync(Server, "mqtt-resender", token);
        var start = Devices.RecentMinute();
        var payload = Devices.JsonHeartRates(7, start, 61, 62, 63);

        var first = await Devices.PublishAsync(client, "devices/mqtt-resender/vitals", payload);
        var again = await Devices.PublishAsync(client, "devices/mqtt-resender/vitals", payload);

        Assert.Equal(MqttClientPublishReasonCode.Success, first.ReasonCode);
        Assert.Equal(MqttClientPublishReasonCode.Success, again.ReasonCode);
        Assert.Contains("already committed", again.ReasonString);
        Assert.Equal(3, (await Server.TrendAsync("p-mqtt-3", "heart_rate", start, start.AddMinutes(1), count: 3)).TotalCount);
    }

    [Fact]
    public async Task A_resent_batch_with_an_implausible_reading_quarantines_it_once_and_counts_it_once()
    {
        var token = await Server.ProvisionAsync("mqtt-resent-quarantine", "p-mqtt-rq");
        using var client = await Devices.ConnectMqttAsync(Server, "mqtt-resent-quarantine", token);
        var payload = Devices.JsonHeartRates(9, Devices.RecentMinute(), 61, 400);
        var before = await QuarantinedAsync();

        await Devices.PublishAsync(client, "devices/mqtt-resent-quarantine/vitals", payload);
        var again = await Devices.PublishAsync(client, "devices/mqtt-resent-quarantine/vitals", payload);

        Assert.Contains("already committed", again.ReasonString);
        Assert.Equal(before + 1, await QuarantinedAsync());
    }

    private async Task<long> QuarantinedAsync() =>
        (await Server.Http.GetStringAsync("/metrics")).Split('\n')
            .Where(line => line.StartsWith("telemetry_readings_quarantined_total{", StringComparison.Ordinal) && line.Contains("protocol=\"mqtt\"", StringComparison.Ordinal))
            .Sum(line => long.Parse(line[(line.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture));

    [Fact]
    public async Task A_senml_publish_without_times_sent_again_is_not_stored_twice_and_a_new_one_like_it_is_stored()
    {
        // SenML with no time means "now": read again later, it would come out at a new time. The publish the device
        // marks as sent again (DUP) under the identifier it first had is read as of its first arrival; a new publish
        // with the same payload is a new reading, and so is a new one that was lost on the way and is sent again under
        // its own identifier. Packets written by hand, as only a client's resend after a reconnect would write them.
        var token = await Server.ProvisionAsync("mqtt-senml-resender", "p-mqtt-senml");
        using var client = new MqttClientFactory().CreateLowLevelMqttClient();
        await client.ConnectAsync(Devices.MqttOptions(Server.MqttPort, "mqtt-senml-resender", "mqtt-senml-resender", token).Build(), CancellationToken.None);
        await client.SendAsync(
            new MQTTnet.Packets.MqttConnectPacket { ClientId = "mqtt-senml-resender", Username = "mqtt-senml-resender", Password = System.Text.Encoding.UTF8.GetBytes(token), CleanSession = true, KeepAlivePeriod = 60 },
            CancellationToken.None);
        var connack = Assert.IsType<MQTTnet.Packets.MqttConnAckPacket>(await client.ReceiveAsync(CancellationToken.None));
        Assert.Equal(MQTTnet.Protocol.MqttConnectReasonCode.Success, connack.ReasonCode);

        // The CONNACK says what the broker takes: 16 topic aliases, packets of the payload limit and some room, and 32
        // publishes in flight.
        Assert.Equal((16, 256 * 1024 + 4096, 32), (connack.TopicAliasMaximum, (int)connack.MaximumPacketSize, (int)connack.ReceiveMaximum));
        var from = DateTimeOffset.UtcNow.AddMinutes(-1);
        var payload = System.Text.Encoding.UTF8.GetBytes("""[{"n":"heart_rate","u":"beat/min","v":72}]""");
        async Task<MQTTnet.Packets.MqttPubAckPacket> PublishAsync(ushort packetId, bool dup)
        {
            await client.SendAsync(
                new MQTTnet.Packets.MqttPublishPacket
                {
                    Topic = "devices/mqtt-senml-resender/vitals",
                    Payload = new System.Buffers.ReadOnlySequence<byte>(payload),
                    QualityOfServiceLevel = MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce,
                    PacketIdentifier = packetId,
                    Dup = dup,
                },
                CancellationToken.None);
            var ack = Assert.IsType<MQTTnet.Packets.MqttPubAckPacket>(await client.ReceiveAsync(CancellationToken.None));
            Assert.Equal(packetId, ack.PacketIdentifier);
            Assert.Equal(MQTTnet.Protocol.MqttPubAckReasonCode.Success, ack.ReasonCode);
            return ack;
        }

        await PublishAsync(1, dup: false);
        await Task.Delay(1_100);
        var again = await PublishAsync(1, dup: true);
        await Task.Delay(1_100);
        await PublishAsync(2, dup: false);
        await Task.Delay(1_100);
        var lostThenSentAgain = await PublishAsync(3, dup: true);

        Assert.Equal("1 reading was already stored", again.ReasonString);
        Assert.NotEqual("1 reading was already stored", lostThenSentAgain.ReasonString);
        Assert.Equal(3, (await Server.RawHeartRatesAsync("p-mqtt-senml", from, DateTimeOffset.UtcNow.AddMinutes(1))).Count);
    }

    [Fact]
    public async Task A_changed_value_for_a_time_already_stored_is_refused_as_a_conflict_and_the_first_value_stands()
    {
        var token = await Server.ProvisionAsync("mqtt-conflict", "p-mqtt-conflict");
        using var client = await Devices.ConnectMqttAsync(Server, "mqtt-conflict", token);
        var start = Devices.RecentMinute();
        string Batch(int seq, params (int Second, int Value)[] readings) =>
            $$"""{"seq":{{seq}},"readings":[{{string.Join(",", readings.Select(r => $$"""{"kind":"heart_rate","time":"{{start.AddSeconds(r.Second):O}}","value":{{r.Value}}}"""))}}]}""";

        var first = await Devices.PublishAsync(client, "devices/mqtt-conflict/vitals", System.Text.Encoding.UTF8.GetBytes(Batch(1, (0, 70), (1, 71))));
        var corrected = await Devices.PublishAsync(client, "devices/mqtt-conflict/vitals", System.Text.Encoding.UTF8.GetBytes(Batch(2, (1, 75), (2, 72))));
        var allChanged = await Devices.PublishAsync(client, "devices/mqtt-conflict/vitals", System.Text.Encoding.UTF8.GetBytes(Batch(3, (0, 80))));

        // A batch of nothing but an implausible reading is refused, and so is the same batch sent again (a lost ack).
        var implausible = await Devices.PublishAsync(client, "devices/mqtt-conflict/vitals", System.Text.Encoding.UTF8.GetBytes(Batch(4, (5, 400))));
        var implausibleAgain = await Devices.PublishAsync(client, "devices/mqtt-conflict/vitals", System.Text.Encoding.UTF8.GetBytes(Batch(4, (5, 400))));

        Assert.Equal(MqttClientPublishReasonCode.Success, first.ReasonCode);
        Assert.Equal(MqttClientPublishReasonCode.Success, corrected.ReasonCode);
        Assert.Contains("1 with another value already stored for the same vital and time", corrected.ReasonString, StringComparison.Ordinal);
        Assert.Equal(MqttClientPublishReasonCode.PayloadFormatInvalid, allChanged.ReasonCode);
        Assert.Contains("another value already stored", allChanged.ReasonString, StringComparison.Ordinal);
        Assert.Equal((MqttClientPublishReasonCode.PayloadFormatInvalid, MqttClientPublishReasonCode.PayloadFormatInvalid), (implausible.ReasonCode, implausibleAgain.ReasonCode));
        Assert.Equal(implausible.ReasonString, implausibleAgain.ReasonString);
        var readings = await Server.RawHeartRatesAsync("p-mqtt-conflict", start.AddMinutes(-1), start.AddMinutes(1));
        Assert.Equal([70.0, 71.0, 72.0], readings.Select(line => double.Parse(line.Split(',')[3], System.Globalization.CultureInfo.InvariantCulture)));
        var metrics = await Server.Http.GetStringAsync("/metrics");
        Assert.Matches("""telemetry_readings_rejected_total\{[^}]*reason="conflict"[^}]*\} [1-9]""", metrics);
    }

    [Fact]
    public async Task Bad_readings_are_refused_with_a_reason_and_good_neighbours_stored()
    {
        var token = await Server.ProvisionAsync("mqtt-mixed", "p-mqtt-4");
        using var client = await Devices.ConnectMqttAsync(Server, "mqtt-mixed", token);
        var start = Devices.RecentMinute();
        var time = start.ToString("O");
        var payload = System.Text.Encoding.UTF8.GetBytes(
            $$"""{"seq":1,"readings":[{"kind":"heart_rate","time":"{{time}}","value":72},{"kind":"heart_rate","time":"{{time}}","value":900},{"kind":"mood","time":"{{time}}","value":3}]}""");

        var result = await Devices.PublishAsync(client, "devices/mqtt-mixed/vitals", payload);
        var malformed = await Devices.PublishAsync(client, "devices/mqtt-mixed/vitals", "{\"seq\":2,"u8.ToArray());

        Assert.Equal(MqttClientPublishReasonCode.Success, result.ReasonCode);
        Assert.Contains("2 readings rejected", result.ReasonString);
        Assert.Equal(MqttClientPublishReasonCode.PayloadFormatInvalid, malformed.ReasonCode);
        var point = Assert.Single((await Server.TrendAsync("p-mqtt-4", "heart_rate", start, start.AddMinutes(1), count: 1)).Points);
        Assert.Equal(1, point.Count);
        Assert.Equal(72, point.Max);
    }

    [Fact]
    public async Task An_mqtt5_devices_publishes_in_flight_are_committed_together_and_each_gets_its_own_answer()
    {
        var token = await Server.ProvisionAsync("mqtt-window", "p-mqtt-window");
        using var client = await Devices.ConnectMqttAsync(Server, "mqtt-window", token);
        var start = Devices.RecentMinute();
        var sentBefore = Devices.JsonHeartRates(1, start.AddSeconds(59), 59);
        Assert.Equal(MqttClientPublishReasonCode.Success, (await Devices.PublishAsync(client, "devices/mqtt-window/vitals", sentBefore)).ReasonCode);
        var before = await Server.CommitCountsAsync();

        // Twenty publishes at once, none waiting for another's PUBACK: every fourth malformed, one a batch sent before.
        var payloads = Enumerable.Range(0, 20).Select(i =>
            i % 4 == 3 ? System.Text.Encoding.UTF8.GetBytes($"{{\"seq\":{100 + i},") : i == 10 ? sentBefore : Devices.JsonHeartRates((ulong)(100 + i), start.AddSeconds(i), 60 + i)).ToList();
        var results = await Task.WhenAll(payloads.Select(payload => Devices.PublishAsync(client, "devices/mqtt-window/vitals", payload)));

        for (var i = 0; i < results.Length; i++)
        {
            var expected = i % 4 == 3 ? MqttClientPublishReasonCode.PayloadFormatInvalid : MqttClientPublishReasonCode.Success;
            Assert.True(expected == results[i].ReasonCode, $"publish {i}: {results[i].ReasonCode} ({results[i].ReasonString}), expected {expected}");
        }

        Assert.Contains("already committed", results[10].ReasonString);
        Assert.DoesNotContain(results.Where((_, i) => i != 10), result => result.ReasonString?.Contains("already committed") == true);

        // Fifteen batches committed (the malformed five are not), in far fewer commits than publishes: the broker read
        // each publish while the ones before it committed, rather than one publish per commit. Each one's wait for its
        // commit is measured.
        var after = await Eventually.ReadAsync(Server.CommitCountsAsync, counts => counts.Batches >= before.Batches + 15 && counts.Waited >= before.Waited + 15);
        Assert.Equal(before.Batches + 15, after.Batches);
        Assert.InRange(after.Commits - before.Commits, 1, 10);
        Assert.Equal(15, after.Waited - before.Waited);
        var trend = await Server.TrendAsync("p-mqtt-window", "heart_rate", start, start.AddMinutes(1), count: 15);
        Assert.Equal(15, trend.TotalCount);
    }

    [Fact]
    public async Task Device_cannot_publish_to_another_devices_topic()
    {
        var token = await Server.ProvisionAsync("mqtt-intruder", "p-mqtt-5");
        await Server.ProvisionAsync("mqtt-victim", "p-mqtt-6");
        using var client = await Devices.ConnectMqttAsync(Server, "mqtt-intruder", token);
        var start = Devices.RecentMinute();

        var result = await Devices.PublishAsync(client, "devices/mqtt-victim/vitals", Devices.JsonHeartRates(1, start, 150));

        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, result.ReasonCode);
        Assert.Empty((await Server.TrendAsync("p-mqtt-6", "heart_rate", start, start.AddMinutes(1))).Points);
        Assert.Empty((await Server.TrendAsync("p-mqtt-5", "heart_rate", start, start.AddMinutes(1))).Points);
    }

    [Fact]
    public async Task Topic_aliases_of_the_devices_own_topic_work_another_topics_are_refused_and_one_never_set_ends_the_connection_with_0x94()
    {
        var token = await Server.ProvisionAsync("mqtt-aliaser", "p-mqtt-alias");
        using var client = await Devices.ConnectMqttAsync(Server, "mqtt-aliaser", token);
        var ended = new TaskCompletionSource<MqttClientDisconnectedEventArgs>(TaskCreationOptions.RunContinuationsAsynchronously);
        client.DisconnectedAsync += args =>
        {
            ended.TrySetResult(args);
            return Task.CompletedTask;
        };
        var start = Devices.RecentMinute();

        MqttApplicationMessage Message(string topic, ushort alias, int second) => new MqttApplicationMessageBuilder()
            .WithTopic(topic)
            .WithTopicAlias(alias)
            .WithPayload(Devices.JsonHeartRates((ulong)second + 1, start.AddSeconds(second), 70 + second))
            .WithQualityOfServiceLevel(MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce)
            .Build();

        // Alias 3 is given the device's topic, then used alone.
        Assert.Equal(MqttClientPublishReasonCode.Success, (await client.PublishAsync(Message("devices/mqtt-aliaser/vitals", 3, 0))).ReasonCode);
        Assert.Equal(MqttClientPublishReasonCode.Success, (await client.PublishAsync(Message("", 3, 1))).ReasonCode);
        Assert.Equal(2, (await Server.TrendAsync("p-mqtt-alias", "heart_rate", start, start.AddMinutes(1), count: 2)).TotalCount);

        // Alias 4 is given another device's topic: refused as that topic is, then and when used alone.
        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, (await client.PublishAsync(Message("devices/someone-else/vitals", 4, 2))).ReasonCode);
        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, (await client.PublishAsync(Message("", 4, 3))).ReasonCode);

        // Alias 5 was never given a topic: a protocol error.
        _ = client.PublishAsync(Message("", 5, 4));
        Assert.Equal(MqttClientDisconnectReason.TopicAliasInvalid, (await ended.Task.WaitAsync(TimeSpan.FromSeconds(10))).Reason);
        Assert.Matches(@"telemetry_payloads_rejected_total\{[^}]*reason=""topic_alias""[^}]*\} [1-9]", await Server.Http.GetStringAsync("/metrics"));
    }

    [Fact]
    public async Task A_device_that_does_not_read_its_answers_is_not_read_either()
    {
        var token = await Server.ProvisionAsync("mqtt-deaf", "p-mqtt-deaf");
        using var socket = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp) { SendTimeout = 3_000 };
        await socket.ConnectAsync(System.Net.IPAddress.Loopback, Server.MqttPort);

        // An MQTT 5 CONNECT (keep-alive 60 s), then its CONNACK: the last the client reads.
        static byte[] Text(string text) => [(byte)(text.Length >> 8), (byte)text.Length, .. System.Text.Encoding.UTF8.GetBytes(text)];
        static byte[] Packet(byte type, byte[] body) => [type, .. RemainingLength(body.Length), .. body];
        static byte[] RemainingLength(int length)
        {
            var bytes = new List<byte>();
            do
            {
                var b = (byte)(length % 128);
                length /= 128;
                bytes.Add(length > 0 ? (byte)(b | 0x80) : b);
            }
            while (length > 0);
            return [.. bytes];
        }

        socket.Send(Packet(0x10, [.. Text("MQTT"), 5, 0xC2, 0, 60, 0, .. Text("mqtt-deaf"), .. Text("mqtt-deaf"), .. Text(token)]));
        var connack = new byte[64];
        Assert.True(socket.Receive(connack) >= 4 && connack[0] == 0x20 && connack[3] == 0, "CONNACK success");

        // Publishes to another device's topic, each refused at once with a PUBACK the client never reads. Once those
        // back up, the server stops reading: the client's sends stall long before it has sent all it had.
        var publish = Packet(0x32, [.. Text("devices/someone-else/vitals"), 0, 1, 0, .. "[]"u8.ToArray()]);
        var chunk = Enumerable.Repeat(publish, 65_536 / publish.Length).SelectMany(packet => packet).ToArray();
        const long budget = 256L << 20;
        long sent = 0;
        var stalled = false;
        var started = DateTime.UtcNow;
        while (sent < budget && DateTime.UtcNow - started < TimeSpan.FromSeconds(60))
        {
            try
            {
                sent += socket.Send(chunk);
            }
            catch (System.Net.Sockets.SocketException exception) when (exception.SocketErrorCode == System.Net.Sockets.SocketError.TimedOut)
            {
                stalled = true;
                break;
            }
        }

        Assert.True(stalled, $"the server read all {sent >> 20} MiB sent in {(DateTime.UtcNow - started).TotalSeconds:F0} s without its answers being read");
    }

    [Theory]
    [InlineData(MQTTnet.Formatter.MqttProtocolVersion.V500)]
    [InlineData(MQTTnet.Formatter.MqttProtocolVersion.V311)]
    public async Task A_connection_with_clean_start_0_taking_an_open_one_over_keeps_its_session_and_publishes_as_the_device(MQTTnet.Formatter.MqttProtocolVersion version)
    {
        var deviceId = $"mqtt-takeover-{(int)version}";
        var token = await Server.ProvisionAsync(deviceId, $"p-mqtt-takeover-{(int)version}");
        MqttClientOptions Persistent() => Devices.MqttOptions(Server.MqttPort, deviceId, deviceId, token, version)
            .WithCleanSession(false).WithSessionExpiryInterval(3_600).Build();
        using var first = new MqttClientFactory().CreateMqttClient();
        Assert.Equal(MqttClientConnectResultCode.Success, (await first.ConnectAsync(Persistent())).ResultCode);

        // A phone changing networks: the new connection comes while the old one is still open.
        using var second = new MqttClientFactory().CreateMqttClient();
        var taken = await second.ConnectAsync(Persistent());

        // The session goes on (its subscription to the patient's alerts, and alerts queued for it): Session Present 1.
        Assert.Equal((MqttClientConnectResultCode.Success, true), (taken.ResultCode, taken.IsSessionPresent));
        var ack = await Devices.PublishAsync(second, $"devices/{deviceId}/vitals", Devices.JsonHeartRates(1, Devices.RecentMinute(), 70));
        Assert.Equal(MqttClientPublishReasonCode.Success, ack.ReasonCode);
    }

    [Fact]
    public async Task Device_subscribes_only_to_its_own_patients_alerts()
    {
        var token = await Server.ProvisionAsync("mqtt-listener", "p-mqtt-10");
        using var client = await Devices.ConnectMqttAsync(Server, "mqtt-listener", token);

        async Task<MqttClientSubscribeResultCode> SubscribeAsync(string topic) =>
            (await client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder()
                .WithTopicFilter(topic, MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce).Build())).Items.Single().ResultCode;

        Assert.Equal(MqttClientSubscribeResultCode.NotAuthorized, await SubscribeAsync("patients/p-mqtt-11/alerts"));
        Assert.Equal(MqttClientSubscribeResultCode.NotAuthorized, await SubscribeAsync("patients/+/alerts"));
        Assert.Equal(MqttClientSubscribeResultCode.NotAuthorized, await SubscribeAsync("#"));
        Assert.Equal(MqttClientSubscribeResultCode.NotAuthorized, await SubscribeAsync("devices/mqtt-listener/vitals"));
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, await SubscribeAsync("patients/p-mqtt-10/alerts"));
    }

    [Fact]
    public async Task Mqtt_311_device_publishing_to_another_topic_is_disconnected_rather_than_acked()
    {
        var token = await Server.ProvisionAsync("mqtt-311-stray", "p-mqtt-8");
        using var client = await Devices.ConnectMqttAsync(Server, "mqtt-311-stray", token, MqttProtocolVersion.V311);

        // A 3.1.1 PUBACK carries no reason code: any PUBACK would read as "stored". Why it was cut off is in its rejects.
        await Assert.ThrowsAnyAsync<MQTTnet.Exceptions.MqttCommunicationException>(
            () => Devices.PublishAsync(client, "devices/somebody-else/vitals", Devices.JsonHeartRates(1, Devices.RecentMinute(), 70)));
        var rejects = System.Text.Json.JsonDocument.Parse(await Server.Http.GetStringAsync("/api/devices/mqtt-311-stray/rejects")).RootElement;
        var reason = Assert.Single(rejects.GetProperty("rejects").EnumerateArray()).GetProperty("reason").GetString();
        Assert.Contains("a device publishes only to devices/mqtt-311-stray/vitals", reason);
    }

    [Fact]
    public async Task An_mqtt_311_sender_finds_its_refusals_and_quarantined_readings_in_the_rejects_endpoint()
    {
        var token = await Server.ProvisionAsync("mqtt-311-rejects", "p-mqtt-9");
        using var client = await Devices.ConnectMqttAsync(Server, "mqtt-311-rejects", token, MqttProtocolVersion.V311);
        var at = Devices.RecentMinute().ToString("O");

        await Devices.PublishAsync(client, "devices/mqtt-311-rejects/vitals", "{\"seq\":1,"u8.ToArray());
        await Devices.PublishAsync(client, "devices/mqtt-311-rejects/vitals", System.Text.Encoding.UTF8.GetBytes(
            $$"""{"seq":2,"readings":[{"kind":"heart_rate","time":"{{at}}","value":72},{"kind":"heart_rate","time":"{{at}}","value":400}]}"""));

        // The device reads them with its own token (an admin may too); another device's token, a person's who is not an
        // admin, or a wrong one reads nothing.
        using var device = Server.ClientWith(token);
        using var response = await device.GetAsync("/api/devices/mqtt-311-rejects/rejects");
        Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
        var body = System.Text.Json.JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        using var other = Server.ClientWith(await Server.ProvisionAsync("mqtt-311-other", "p-mqtt-10"));
        Assert.Equal(System.Net.HttpStatusCode.Forbidden, (await other.GetAsync("/api/devices/mqtt-311-rejects/rejects")).StatusCode);
        using var clinician = Server.ClientWith(await Server.MintTokenAsync("--role", "clinician", "--sub", "dr-rejects", "--care-team", "rejects-ward"));
        Assert.Equal(System.Net.HttpStatusCode.Forbidden, (await clinician.GetAsync("/api/devices/mqtt-311-rejects/rejects")).StatusCode);
        using var wrong = Server.ClientWith(token[..^4] + (token.EndsWith("0000", StringComparison.Ordinal) ? "1111" : "0000"));
        Assert.Equal(System.Net.HttpStatusCode.Unauthorized, (await wrong.GetAsync("/api/devices/mqtt-311-rejects/rejects")).StatusCode);
        Assert.Equal(System.Net.HttpStatusCode.OK, (await Server.Http.GetAsync("/api/devices/mqtt-311-rejects/rejects")).StatusCode);
        var reasons = body.GetProperty("rejects").EnumerateArray().Select(r => r.GetProperty("reason").GetString()).ToList();
        var quarantined = Assert.Single(body.GetProperty("quarantined").EnumerateArray());
        Assert.Equal(2, reasons.Count);
        Assert.Contains("value outside the plausible range", reasons[0]);
        Assert.Contains("malformed JSON batch", reasons[1]);
        Assert.Equal(400, quarantined.GetProperty("value").GetDouble());
        Assert.Equal("/min", quarantined.GetProperty("unit").GetString());
        Assert.Equal("implausible", quarantined.GetProperty("reason").GetString());

        // The device's read of its patient's quarantined readings is audited as the device's.
        var audit = await Server.Http.GetFromJsonAsync<System.Text.Json.JsonElement>("/api/audit?patientId=p-mqtt-9");
        Assert.Contains(audit.EnumerateArray(), record => record.GetProperty("actor").GetString() == "device:mqtt-311-rejects"
            && record.GetProperty("action").GetString() == "GET /api/devices/mqtt-311-rejects/rejects" && record.GetProperty("status").GetInt32() == 200);

        // So is another device refused: the audit names who asked.
        var refused = await Server.Http.GetFromJsonAsync<System.Text.Json.JsonElement>("/api/audit?actor=device:mqtt-311-other");
        Assert.Contains(refused.EnumerateArray(), record => record.GetProperty("actor").GetString() == "device:mqtt-311-other" && record.GetProperty("status").GetInt32() == 403);
    }

    [Fact]
    public async Task Unknown_device_wrong_token_and_borrowed_client_id_are_refused()
    {
        var token = await Server.ProvisionAsync("mqtt-known", "p-mqtt-7");
        Task<MqttClientConnectResultCode> ConnectAsync(string clientId, string user, string password) =>
            Devices.TryConnectMqttAsync(Devices.MqttOptions(Server.MqttPort, clientId, user, password).Build());

        var wrongSecret = token[..^4] + (token.EndsWith("0000", StringComparison.Ordinal) ? "1111" : "0000");
        Assert.Equal(MqttClientConnectResultCode.BadUserNameOrPassword, await ConnectAsync("mqtt-unknown", "mqtt-unknown", "mqtt-unknown." + new string('0', 64)));
        Assert.Equal(MqttClientConnectResultCode.BadUserNameOrPassword, await ConnectAsync("mqtt-known", "mqtt-known", wrongSecret));
        Assert.Equal(MqttClientConnectResultCode.BadUserNameOrPassword, await ConnectAsync("mqtt-known", "mqtt-other", token));
        Assert.Equal(MqttClientConnectResultCode.ClientIdentifierNotValid, await ConnectAsync("someone-else", "mqtt-known", token));
        Assert.Equal(MqttClientConnectResultCode.Success, await ConnectAsync("mqtt-known", "mqtt-known", token));
    }
}
