extern alias simulator;

using System.Globalization;
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

    [Fact]
    public async Task A_fleet_started_together_sends_its_first_batches_spread_over_a_period()
    {
        // Sixteen devices at 5 readings a second in batches of 5: a batch a second, each holding the second before it
        // was sent, so a device's first stored reading tells when in the period it first sent.
        var options = new SimulatorOptions
        {
            Url = $"http://127.0.0.1:{Server.HttpPort}",
            MqttHost = "127.0.0.1",
            MqttPort = Server.MqttPort,
            AdminToken = Server.AdminToken,
            Protocol = "mqtt",
            MqttClient = SimulatorOptions.LeanClient,
            Devices = 16,
            Rate = 5,
            Batch = 5,
            Prefix = "phase-watch",
        };
        var fleet = new Fleet(options, new FleetStatistics());
        var wearables = await fleet.ProvisionAsync(CancellationToken.None);
        var started = DateTimeOffset.UtcNow;
        using (var stop = new CancellationTokenSource(TimeSpan.FromSeconds(2.5)))
        {
            await Task.WhenAll(wearables.Select(wearable => fleet.RunAsync(wearable, new DeviceLedger(wearable.DeviceId, wearable.PatientId), stop.Token)));
        }

        var firsts = new List<DateTimeOffset>();
        foreach (var wearable in wearables)
        {
            var rows = await Server.RawHeartRatesAsync(wearable.PatientId, started.AddSeconds(-2), started.AddSeconds(10));
            Assert.NotEmpty(rows);
            firsts.Add(DateTimeOffset.Parse(rows[0].Split(',')[0], CultureInfo.InvariantCulture));
        }

        // Started in step, the devices would all send within the few milliseconds their connections took; at random
        // points of the second, sixteen fall within 400 ms of each other about once in 90,000 runs.
        Assert.True(firsts.Max() - firsts.Min() > TimeSpan.FromMilliseconds(400), $"first batches within {(firsts.Max() - firsts.Min()).TotalMilliseconds} ms");
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
