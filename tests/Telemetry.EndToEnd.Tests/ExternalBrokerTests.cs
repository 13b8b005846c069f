using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using MQTTnet;
using Telemetry.Testing;
using Xunit.Abstractions;

namespace Telemetry.EndToEnd.Tests;

/// <summary>
/// Devices publish to a real Mosquitto, set up as the README shows (password file, ACL keeping each device to its
/// own topic); two servers of a cluster read them through one shared subscription in persistent sessions. One server
/// is killed in the middle and started again: it resumes its session, and every reading is stored once.
/// </summary>
public sealed partial class ExternalBrokerTests(ITestOutputHelper output)
{
    private const int DeviceCount = 4;
    private const int Batches = 150;
    private const int ReadingsPerBatch = 5;

    [Fact]
    public async Task Two_servers_share_the_brokers_messages_and_store_every_reading_once_across_a_kill()
    {
        var passwords = Enumerable.Range(0, DeviceCount).ToDictionary(i => $"ext-watch-{i}", i => $"broker-password-{i}");
        await using var broker = await MosquittoBroker.StartAsync(passwords);
        await using var redis = await RedisServer.StartAsync();
        await using var series = await VictoriaMetrics.StartNewAsync();
        Dictionary<string, string> Settings(string clientId) => new()
        {
            ["Telemetry__Cluster__Redis"] = redis.ConnectionString,
            ["Telemetry__Cluster__AdvertisedAddress"] = "127.0.0.1",
            ["Telemetry__Storage__RawStore"] = "VictoriaMetrics",
            ["Telemetry__Storage__VictoriaMetrics__Url"] = series.Url,
            ["Telemetry__Ingest__ExternalBroker__Host"] = "127.0.0.1",
            ["Telemetry__Ingest__ExternalBroker__Port"] = broker.Port.ToString(CultureInfo.InvariantCulture),
            ["Telemetry__Ingest__ExternalBroker__Username"] = MosquittoBroker.IngestUser,
            ["Telemetry__Ingest__ExternalBroker__Password"] = broker.IngestPassword,
            ["Telemetry__Ingest__ExternalBroker__ClientId"] = clientId,
            ["Telemetry__Ingest__ExternalBroker__InFlight"] = "32",
        };
        var adminToken = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
        await using var first = new TelemetryServer(Settings("ingest-first"), adminToken: adminToken);
        await using var second = new TelemetryServer(Settings("ingest-second"), adminToken: adminToken);
        await first.StartAsync();
        await second.StartAsync();
        await ReadyAsync(first);
        await ReadyAsync(second);

        var start = Devices.RecentMinute(30);
        var sent = new int[DeviceCount];
        for (var i = 0; i < DeviceCount; i++)
        {
            await first.ProvisionAsync($"ext-watch-{i}", $"p-ext-{i}");
        }

        // The server hosts no MQTT: devices talk to the broker only.
        Assert.False(await Devices.IsListeningAsync(first.MqttPort));

        // The broker keeps each device to its own topic.
        using (var intruder = await Devices.ConnectMqttAsync(Devices.MqttOptions(broker.Port, "ext-watch-0", "ext-watch-0", passwords["ext-watch-0"]).Build()))
        {
            var refused = await Devices.PublishAsync(intruder, "devices/ext-watch-1/vitals", Devices.JsonHeartRates(1, start, 70));
            Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, refused.ReasonCode);
        }

        async Task SendAsync(int device, int fromBatch, int toBatch)
        {
            var deviceId = $"ext-watch-{device}";
            using var client = await Devices.ConnectMqttAsync(Devices.MqttOptions(broker.Port, deviceId, deviceId, passwords[deviceId]).Build());
            for (var seq = fromBatch; seq <= toBatch; seq++)
            {
                var values = Enumerable.Range(0, ReadingsPerBatch).Select(r => 60.0 + ((seq + r) % 40)).ToArray();
                var ack = await Devices.PublishAsync(client, $"devices/{deviceId}/vitals",
                    Devices.JsonHeartRates((ulong)seq, start.AddSeconds((seq - 1) * ReadingsPerBatch), values));
                Assert.Equal(MqttClientPublishReasonCode.Success, ack.ReasonCode);
                sent[device]++;
                await Task.Delay(5);
            }
        }

        // A third of each device's batches, then the first server dies in the middle of the next third.
        await Task.WhenAll(Enumerable.Range(0, DeviceCount).Select(device => SendAsync(device, 1, Batches / 3)));
        var middle = Task.WhenAll(Enumerable.Range(0, DeviceCount).Select(device => SendAsync(device, (Batches / 3) + 1, 2 * Batches / 3)));
        await Task.Delay(300);
        var takenByFirst = await AcceptedAsync(first);
        await first.KillAsync();
        await middle;
        await first.StartAsync();
        await ReadyAsync(first);

        // Back under the same client id, it resumes its session: what the broker queued for it while it was away
        // (and what it had not acknowledged) comes to it now.
        Assert.Contains("session resumed: True", await first.OutputWhenAsync("session resumed: True"), StringComparison.Ordinal);
        await Task.WhenAll(Enumerable.Range(0, DeviceCount).Select(device => SendAsync(device, (2 * Batches / 3) + 1, Batches)));

        // A malformed message is acknowledged to the broker (it would only come back), counted, and in the reject log.
        using (var sloppy = await Devices.ConnectMqttAsync(Devices.MqttOptions(broker.Port, "ext-watch-3", "ext-watch-3", passwords["ext-watch-3"]).Build()))
        {
            await Devices.PublishAsync(sloppy, "devices/ext-watch-3/vitals", "{\"seq\":"u8.ToArray());
        }

        var takenBySecond = await AcceptedAsync(second);
        output.WriteLine($"readings taken before the kill by the first server: {takenByFirst}; by the second in all: {takenBySecond}");
        Assert.True(takenByFirst > 0 && takenBySecond > 0, "both servers took a share");

        await series.FlushAsync();
        for (var device = 0; device < DeviceCount; device++)
        {
            Assert.Equal(Batches, sent[device]);
            var patientId = $"p-ext-{device}";
            var to = start.AddSeconds(Batches * ReadingsPerBatch).AddMinutes(1);
            var rows = await Eventually.ReadAsync(async () =>
            {
                await series.FlushAsync();
                return await second.RawHeartRatesAsync(patientId, start, to);
            }, list => list.Count >= Batches * ReadingsPerBatch, TimeSpan.FromSeconds(60));
            Assert.Equal(Batches * ReadingsPerBatch, rows.Count);
            Assert.Equal(rows.Count, rows.Distinct().Count());
        }

        var rejects = await Eventually.ReadAsync(
            async () => await first.Http.GetStringAsync("/api/devices/ext-watch-3/rejects") + await second.Http.GetStringAsync("/api/devices/ext-watch-3/rejects"),
            text => text.Contains("malformed JSON batch", StringComparison.Ordinal));
        Assert.Contains("malformed JSON batch", rejects, StringComparison.Ordinal);
    }

    private static async Task ReadyAsync(TelemetryServer server)
    {
        var body = await Eventually.ReadAsync(
            async () =>
            {
                using var response = await server.Http.GetAsync("/healthz");
                return response.StatusCode == HttpStatusCode.OK ? await response.Content.ReadAsStringAsync() : "";
            },
            text => text.Contains("reading devices from the external MQTT broker", StringComparison.Ordinal),
            TimeSpan.FromSeconds(60));
        Assert.Contains("reading devices from the external MQTT broker", body, StringComparison.Ordinal);
    }

    private static async Task<long> AcceptedAsync(TelemetryServer server) =>
        Accepted().Matches(await server.Http.GetStringAsync("/metrics")).Sum(match => long.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture));

    [GeneratedRegex(@"^telemetry_readings_accepted\S*\s+(\d+)", RegexOptions.Multiline)]
    private static partial Regex Accepted();
}
