using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using MQTTnet;
using Telemetry.Testing;
using Xunit.Abstractions;

namespace Telemetry.EndToEnd.Tests;

/// <summary>
/// Two server processes form one cluster through a real Redis, with the raw series and rollups in a real
/// VictoriaMetrics. Devices publish to both; one server is killed (SIGKILL) in the middle; its devices move to the other,
/// its patients' grains come back there with their rules and alert state, nothing acked is lost or stored twice, and
/// every patient's trend holds every reading.
/// </summary>
public sealed partial class ClusterTests(ITestOutputHelper output)
{
    private const int Patients = 8;
    private const int Batches = 120;
    private const int ReadingsPerBatch = 5;

    // Every patient's heart rate is over 120 from FirstAlertBatch until HighUntilBatch (the first episode, open when
    // the server is killed, cleared after), and again in SecondAlertBatch (the second episode).
    private const int FirstAlertBatch = 10;
    private const int HighUntilBatch = 59;
    private const int SecondAlertBatch = 100;

    [Fact]
    public async Task Two_servers_share_the_patients_and_one_killed_loses_no_acked_reading_and_no_alert()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var series = await VictoriaMetrics.StartNewAsync();
        var settings = new Dictionary<string, string>
        {
            ["Telemetry__Cluster__Redis"] = redis.ConnectionString,
            ["Telemetry__Cluster__ClusterId"] = "e2e",
            ["Telemetry__Cluster__AdvertisedAddress"] = "127.0.0.1",
            ["Telemetry__Storage__RawStore"] = "VictoriaMetrics",
            ["Telemetry__Storage__VictoriaMetrics__Url"] = series.Url,

            // Printed only if the test fails: what the grains rebuilt, settled and recomputed.
            ["Logging__LogLevel__Telemetry"] = "Debug",
        };
        var adminToken = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
        await using var first = new TelemetryServer(settings, adminToken: adminToken);
        await using var second = new TelemetryServer(settings, adminToken: adminToken);
        await first.StartAsync();
        using var dump = new OutputOnFailure(output, first, second);

        async Task SetRulesAsync(TelemetryServer server, string patientId)
        {
            using var rules = await server.Http.PutAsync($"/api/patients/{patientId}/alert-rules", new StringContent(
                """{"rules":[{"id":"hr-high","type":"threshold","kind":"heart_rate","direction":"above","level":120,"clearLevel":110,"priority":"high"}]}""",
                Encoding.UTF8,
                "application/json"));
            Assert.Equal(HttpStatusCode.OK, rules.StatusCode);
        }

        // Devices are all provisioned on the first server, and half of them connect to the second: it is one registry.
        // Setting a patient's rules starts its grain. The even-numbered patients' rules are set while the first server
        // is alone, so their grains are on it when it is killed (once both run, Orleans places a grain by the servers'
        // load, and now and then put all eight on one of them); the others' once the second has joined.
        // Ten minutes of readings ending two minutes ago: recent enough to raise alerts.
        var start = Devices.RecentMinute(12);
        var firstServerGone = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var devices = new List<ResendingDevice>();
        for (var i = 0; i < Patients; i++)
        {
            var patientId = $"p-cluster-{i}";
            var token = await first.ProvisionAsync($"cluster-watch-{i}", patientId);
            if (i % 2 == 0)
            {
                await SetRulesAsync(first, patientId);
            }

            devices.Add(new ResendingDevice($"cluster-watch-{i}", patientId, token, start, Batches, ReadingsPerBatch)
            {
                HeartRates = seq => seq is >= FirstAlertBatch and <= HighUntilBatch or SecondAlertBatch
                    ? [.. Enumerable.Repeat(130.0, ReadingsPerBatch)]
                    : [.. Enumerable.Range(0, ReadingsPerBatch).Select(r => 60.0 + ((seq + r) % 40))],

                // The first episode clears, and the second comes, once the cluster has settled without the killed server.
                BeforeBatch = seq => seq == HighUntilBatch + 1 ? firstServerGone.Task : Task.CompletedTask,
            });
        }

        // A patient whose only device goes quiet just before its server dies: its grain is on the first server (its rules
        // set while that one is alone), and the silence must still raise its no-data alert on the second.
        const string SilentPatient = "p-silent-cluster";
        var silentToken = await first.ProvisionAsync("cluster-silent-watch", SilentPatient);
        using (var rules = await first.Http.PutAsync($"/api/patients/{SilentPatient}/alert-rules", new StringContent(
            """{"rules":[{"id":"silent","type":"no_data","silenceSeconds":10,"priority":"medium"}]}""", Encoding.UTF8, "application/json")))
        {
            Assert.Equal(HttpStatusCode.OK, rules.StatusCode);
        }

        await second.StartAsync();
        await ActiveSilosAsync(second, 2);
        for (var i = 1; i < Patients; i += 2)
        {
            await SetRulesAsync(second, $"p-cluster-{i}");
        }

        await using var alerts = await AlertStreamClient.OpenAsync(second, "/api/alerts/stream");

        // Even-numbered devices connect to the first server while it lives, the others to the second.
        var firstAlive = 1;
        Task<IMqttClient> Connect(ResendingDevice device, int index) =>
            index % 2 == 0 && Volatile.Read(ref firstAlive) == 1
                ? Devices.ConnectMqttAsync(first, device.DeviceId, device.Token)
                : Devices.ConnectMqttAsync(second, device.DeviceId, device.Token);
        using var loadDone = new CancellationTokenSource(TimeSpan.FromMinutes(4));
        var load = devices.Select((device, index) => device.SendAllAsync(() => Connect(device, index), loadDone.Token)).ToList();

        while (devices.Any(device => device.Acked < FirstAlertBatch + 20))
        {
            await Task.Delay(20);
        }

        // The server about to be killed holds the even-numbered patients' grains, and maybe more (then the kill moves
        // them all, which is the harder case).
        var onFirst = await ActivePatientsAsync(first);
        var onSecond = await ActivePatientsAsync(second);
        output.WriteLine($"patients active before the kill: {onFirst} on the first server, {onSecond} on the second");
        Assert.True(onFirst > 0, $"no grain on the server about to be killed: {onFirst} and {onSecond}");

        using (var silentDevice = first.ClientWith(silentToken))
        using (var last = await silentDevice.PostAsync("/api/devices/cluster-silent-watch/readings", new StringContent(
            $$"""{"readings":[{"kind":"heart_rate","time":"{{DateTimeOffset.UtcNow:O}}","value":70}]}""", Encoding.UTF8, "application/json")))
        {
            Assert.Equal(HttpStatusCode.OK, last.StatusCode);
        }

        Volatile.Write(ref firstAlive, 0);
        await first.KillAsync();
        var killed = DateTimeOffset.UtcNow;
        await ActiveSilosAsync(second, 1);
        output.WriteLine($"the second server declared the first dead after {(DateTimeOffset.UtcNow - killed).TotalSeconds:F1} s");
        firstServerGone.SetResult();
        await Task.WhenAll(load);

        // Every acked reading is stored, once, whichever server took it.
        await series.FlushAsync();
        foreach (var device in devices)
        {
            output.WriteLine(device.ToString());
            Assert.Equal(Batches, device.Acked);
            Assert.Equal(device.Readings, (await second.RawHeartRatesAsync(device.PatientId, device.Start, device.End)).Count);
        }

        // The trends hold them all too: the grains that came back on the second server rebuilt from the raw store, and
        // the second server settles the commits it had applied lately, which one coming back may not have seen yet (if
        // its grain calls had answered for any within ReadableAfter of the first's death being known).
        output.WriteLine($"the second server settled its recent commits: {second.Output.Contains("A server left the cluster", StringComparison.Ordinal)} (saw the first leave: {second.Output.Contains("is leaving the cluster", StringComparison.Ordinal)})");
        foreach (var device in devices)
        {
            var trend = await second.TrendAsync(device.PatientId, "heart_rate", device.Start.AddMinutes(-1), device.End, "1m", device.Readings);
            if (trend.TotalCount != device.Readings)
            {
                await WriteMinutesAsync(second, device, trend);
            }

            Assert.True(trend.TotalCount == device.Readings, $"{device.PatientId}'s 1m trend holds {trend.TotalCount} readings of {device.Readings}");
        }

        // Each patient had exactly two episodes. The first was open when its server died; the grain that came back on
        // the second server knew it was open (no second raise) and cleared it. The second is numbered on from it.
        foreach (var device in devices)
        {
            var episodes = await Eventually.ReadAsync(
                () => second.Http.GetFromJsonAsync<JsonElement>($"/api/patients/{device.PatientId}/alerts?status=all"),
                list => list.GetArrayLength() == 2 && list.EnumerateArray().All(alert => alert.GetProperty("status").GetString() == "cleared"));
            Assert.Equal(
                [($"{device.PatientId}~2", "cleared"), ($"{device.PatientId}~1", "cleared")],
                episodes.EnumerateArray().Select(alert => (alert.GetProperty("alertId").GetString(), alert.GetProperty("status").GetString())));
        }

        // The second server's dashboard stream carried every patient's alerts, whichever server raised them, each
        // raised once.
        List<string> RaisedForDevices() =>
            [.. alerts.Received.Where(item => item.Alert.Type == "raised" && item.Alert.AlertId.StartsWith("p-cluster-", StringComparison.Ordinal)).Select(item => item.Alert.AlertId)];
        var raised = await Eventually.ReadAsync(() => Task.FromResult(RaisedForDevices()), ids => ids.Count >= 2 * Patients);
        await Task.Delay(500);
        raised = RaisedForDevices();
        Assert.Equal(2 * Patients, raised.Count);
        Assert.Equal(2 * Patients, raised.Distinct().Count());

        // The silent patient's grain came back on the second server once the first was dead, and its silence raised. (Its
        // monitoring had not begun until its one reading, which may have raised an alert of its own, cleared by that reading.)
        static bool Open(JsonElement alert) => alert.GetProperty("status").GetString() != "cleared";
        var silence = await Eventually.ReadAsync(
            () => second.Http.GetFromJsonAsync<JsonElement>($"/api/patients/{SilentPatient}/alerts?status=all"),
            list => list.EnumerateArray().Any(Open),
            TimeSpan.FromSeconds(60));
        Assert.Equal("silent", Assert.Single(silence.EnumerateArray(), Open).GetProperty("ruleId").GetString());

        using (var health = await second.Http.GetAsync("/healthz"))
        {
            Assert.Equal(HttpStatusCode.OK, health.StatusCode);
        }

        // A token revoked through one server (a new one, joining) ends the device's session on another.
        var first2 = new TelemetryServer(settings, adminToken: adminToken);
        await using (first2)
        {
            await first2.StartAsync();
            var device = devices[1];
            using var session = await Devices.ConnectMqttAsync(second, device.DeviceId, device.Token);
            var ended = new TaskCompletionSource<MqttClientDisconnectedEventArgs>(TaskCreationOptions.RunContinuationsAsynchronously);
            session.DisconnectedAsync += args =>
            {
                ended.TrySetResult(args);
                return Task.CompletedTask;
            };
            using var revoked = await first2.Http.DeleteAsync($"/api/devices/{device.DeviceId}/token");
            Assert.Equal(HttpStatusCode.OK, revoked.StatusCode);
            Assert.Equal(MqttClientDisconnectReason.NotAuthorized, (await ended.Task.WaitAsync(TimeSpan.FromSeconds(10))).Reason);
            await first2.TerminateAsync(TimeSpan.FromSeconds(30));
        }

        dump.Passed = true;
    }

    /// <summary>Writes both servers' output to the test's output when the test fails (disposed without <see cref="Passed"/>).</summary>
    private sealed class OutputOnFailure(ITestOutputHelper output, params TelemetryServer[] servers) : IDisposable
    {
        public bool Passed { get; set; }

        public void Dispose()
        {
            if (!Passed)
            {
                foreach (var server in servers)
                {
                    output.WriteLine($"--- server on port {server.HttpPort} ---");
                    output.WriteLine(server.Output);
                }
            }
        }
    }

    /// <summary>Writes the minutes where the trend and the raw series disagree, to tell which window lost what.</summary>
    private async Task WriteMinutesAsync(TelemetryServer server, ResendingDevice device, TrendResponse trend)
    {
        var raw = (await server.RawHeartRatesAsync(device.PatientId, device.Start, device.End))
            .Select(row => DateTimeOffset.Parse(row[..row.IndexOf(',', StringComparison.Ordinal)], CultureInfo.InvariantCulture))
            .GroupBy(time => new DateTimeOffset(time.Year, time.Month, time.Day, time.Hour, time.Minute, 0, TimeSpan.Zero))
            .ToDictionary(minute => minute.Key, minute => minute.Count());
        var trended = trend.Points.ToDictionary(point => point.Start.ToUniversalTime(), point => point.Count);
        foreach (var minute in raw.Keys.Union(trended.Keys).Order())
        {
            var (inRaw, inTrend) = (raw.GetValueOrDefault(minute), trended.GetValueOrDefault(minute));
            if (inRaw != inTrend)
            {
                output.WriteLine($"{device.PatientId} minute {minute:HH:mm}: raw {inRaw}, trend {inTrend}");
            }
        }
    }

    private static async Task ActiveSilosAsync(TelemetryServer server, int count)
    {
        // Read whatever health answers: while the dead silo is being declared dead, grain calls to it hang, commits
        // wait behind them, and the store check may say so (503) until the calls time out.
        var expected = $"{count} active silo(s)";
        var health = await Eventually.ReadAsync(server.HealthAsync, answer => answer.Body.Contains(expected, StringComparison.Ordinal), TimeSpan.FromSeconds(90));
        Assert.Contains(expected, health.Body, StringComparison.Ordinal);
    }

    private static async Task<long> ActivePatientsAsync(TelemetryServer server)
    {
        var metrics = await server.Http.GetStringAsync("/metrics");
        return ActivePatients().Match(metrics) is { Success: true } match ? long.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture) : 0;
    }

    [GeneratedRegex(@"^telemetry_patients_active\S*\s+(\d+)", RegexOptions.Multiline)]
    private static partial Regex ActivePatients();
}
