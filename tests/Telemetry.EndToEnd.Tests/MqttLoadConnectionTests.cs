extern alias simulator;

using Google.Protobuf;
using simulator::Telemetry.Simulator;
using Xunit;
using SimulatorProtos = simulator::Telemetry.Protos;

namespace Telemetry.EndToEnd.Tests;

/// <summary>
/// The load benchmark's minimal MQTT 5 client against the real server and Debian's Mosquitto: what it counts as
/// acknowledged must be what the broker acknowledged, or the benchmark's figures mean nothing.
/// </summary>
public sealed class MqttLoadConnectionTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private TelemetryServer Server => fixture.Server;

    [Fact]
    public async Task Every_publish_is_matched_to_its_puback_and_its_readings_are_stored()
    {
        var token = await Server.ProvisionAsync("load-watch", "p-load-1");
        using var connection = await MqttLoadConnection.ConnectAsync("127.0.0.1", Server.MqttPort, "load-watch", "load-watch", token, maxInFlight: 100, CancellationToken.None);
        var acked = new List<(int Readings, byte Reason)>();
        connection.Acked = (readings, _, _, reason) =>
        {
            lock (acked)
            {
                acked.Add((readings, reason));
            }
        };

        // Sixty one-reading batches, one a second over a minute, and one batch of three: all in flight at once.
        var start = Devices.RecentMinute();
        var topic = "devices/load-watch/vitals"u8.ToArray();
        for (var i = 0; i < 60; i++)
        {
            connection.Publish(topic, Batch((ulong)i + 1, start.AddSeconds(i), 60 + i), readings: 1);
        }

        connection.Publish(topic, Batch(61, start.AddMinutes(1), 100, 101, 102), readings: 3);

        Assert.True(await connection.DrainAsync(TimeSpan.FromSeconds(30)), $"{connection.InFlight} publishes had no answer");
        Assert.Equal(61, acked.Count);
        Assert.All(acked, ack => Assert.Equal(0, ack.Reason));
        Assert.Equal(63, acked.Sum(ack => ack.Readings));
        var minute = Assert.Single((await Server.TrendAsync("p-load-1", "heart_rate", start, start.AddMinutes(1), count: 60)).Points);
        Assert.Equal(60, minute.Count);
        Assert.Equal(89.5, minute.Mean);
    }

    [Fact]
    public async Task A_refused_publish_reports_the_servers_reason_code()
    {
        var token = await Server.ProvisionAsync("load-empty", "p-load-2");
        using var connection = await MqttLoadConnection.ConnectAsync("127.0.0.1", Server.MqttPort, "load-empty", "load-empty", token, maxInFlight: 100, CancellationToken.None);
        var reasons = new List<byte>();
        connection.Acked = (_, _, _, reason) =>
        {
            lock (reasons)
            {
                reasons.Add(reason);
            }
        };

        // No readings: PUBACK 0x99 (payload format invalid) with a reason string, so the PUBACK carries properties.
        connection.Publish("devices/load-empty/vitals"u8, new SimulatorProtos.VitalBatch { Seq = 1 }, readings: 0);

        Assert.True(await connection.DrainAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal([(byte)0x99], reasons);
    }

    [Fact]
    public async Task A_wrong_token_is_refused_at_connect_and_another_patients_alerts_at_subscribe()
    {
        var token = await Server.ProvisionAsync("load-sub", "p-load-3");

        var refused = await Assert.ThrowsAsync<InvalidOperationException>(() =>
            MqttLoadConnection.ConnectAsync("127.0.0.1", Server.MqttPort, "load-sub", "load-sub", "load-sub." + new string('a', 64), maxInFlight: 1, CancellationToken.None));
        Assert.Contains("0x86", refused.Message); // bad user name or password

        using var connection = await MqttLoadConnection.ConnectAsync("127.0.0.1", Server.MqttPort, "load-sub", "load-sub", token, maxInFlight: 100, CancellationToken.None);
        await connection.SubscribeAsync("patients/p-load-3/alerts", CancellationToken.None);
        var other = await Assert.ThrowsAsync<InvalidOperationException>(() => connection.SubscribeAsync("patients/p-load-1/alerts", CancellationToken.None));
        Assert.Contains("0x87", other.Message); // not authorized
    }

    [Fact]
    public async Task Through_mosquitto_a_subscriber_is_delivered_every_message_a_device_publishes()
    {
        await using var broker = await MosquittoBroker.StartAsync(new Dictionary<string, string> { ["relay-watch"] = "relay-secret" });
        using var subscriber = await MqttLoadConnection.ConnectAsync("127.0.0.1", broker.Port, "relay-reader", MosquittoBroker.IngestUser, broker.IngestPassword, maxInFlight: 1, CancellationToken.None);
        var delivered = new List<ulong>();
        subscriber.MessageReceived = (topic, payload) =>
        {
            Assert.True(topic.SequenceEqual("devices/relay-watch/vitals"u8));
            lock (delivered)
            {
                delivered.Add(SimulatorProtos.VitalBatch.Parser.ParseFrom(payload).Seq);
            }
        };
        await subscriber.SubscribeAsync("devices/+/vitals", CancellationToken.None);

        using var device = await MqttLoadConnection.ConnectAsync("127.0.0.1", broker.Port, "relay-watch", "relay-watch", "relay-secret", maxInFlight: 500, CancellationToken.None);
        var acked = 0;
        device.Acked = (_, _, _, reason) =>
        {
            if (reason < 0x80)
            {
                Interlocked.Increment(ref acked);
            }
        };
        for (ulong seq = 1; seq <= 500; seq++)
        {
            device.Publish("devices/relay-watch/vitals"u8, Batch(seq, DateTimeOffset.UtcNow, 70), readings: 1);
        }

        Assert.True(await device.DrainAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal(500, acked);
        for (var i = 0; i < 300 && Count(delivered) < 500; i++)
        {
            await Task.Delay(10);
        }

        Assert.Equal(Enumerable.Range(1, 500).Select(seq => (ulong)seq), delivered.Order());
    }

    private static int Count(List<ulong> list)
    {
        lock (list)
        {
            return list.Count;
        }
    }

    private static SimulatorProtos.VitalBatch Batch(ulong seq, DateTimeOffset start, params double[] values) =>
        SimulatorProtos.VitalBatch.Parser.ParseFrom(Devices.ProtobufBatch(seq, start, "heart_rate", "beat/min", values).ToByteArray());
}
