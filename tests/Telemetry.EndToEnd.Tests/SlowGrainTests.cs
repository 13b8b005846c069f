using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text.RegularExpressions;
using Telemetry.Testing;
using Xunit.Abstractions;

namespace Telemetry.EndToEnd.Tests;

/// <summary>
/// Patients' grains made slow while the raw store stays fast: the cluster's Redis, where the grains keep their alert
/// state, sits behind a proxy that holds back every chunk, and every batch flips an alert. Commits and acks go on
/// until the readings waiting on grains reach the bound; then the commit loop waits, health names the grains, and when
/// Redis is fast again everything resumes by itself, every reading stored once.
/// </summary>
public sealed partial class SlowGrainTests(ITestOutputHelper output)
{
    private const int Batches = 120;
    private const int ReadingsPerBatch = 5;
    private const int Bound = 200;

    [Fact]
    public async Task Slow_grains_hold_commits_back_only_past_the_bound_and_health_names_them()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var proxy = new FaultyProxy(redis.Port);
        await using var series = await VictoriaMetrics.StartNewAsync();
        await using var server = await TelemetryServer.StartNewAsync(new Dictionary<string, string>
        {
            ["Telemetry__Cluster__Redis"] = $"127.0.0.1:{proxy.Port}",
            ["Telemetry__Cluster__AdvertisedAddress"] = "127.0.0.1",
            ["Telemetry__Storage__RawStore"] = "VictoriaMetrics",
            ["Telemetry__Storage__VictoriaMetrics__Url"] = series.Url,
            ["Telemetry__Ingest__MaxReadingsInGrainCalls"] = $"{Bound}",
            ["Telemetry__Ingest__SlowCommitWait"] = "00:00:02",
            ["Telemetry__Ingest__MaxMessagesPerSecondPerDevice"] = "1000000",
        });

        // Every batch raises or clears an alert, so every grain call writes the patient's alert state to Redis. The
        // readings are recent (older ones would be history, judged by no rule) and end within the future skew allowed.
        var start = Devices.RecentMinute(1);
        var devices = new List<ResendingDevice>();
        for (var i = 0; i < 2; i++)
        {
            var (deviceId, patientId) = ($"slow-grain-watch-{i}", $"p-slow-grain-{i}");
            var token = await server.ProvisionAsync(deviceId, patientId);
            using var rules = await server.Http.PutAsJsonAsync($"/api/patients/{patientId}/alert-rules", new
            {
                rules = new[] { new { id = "flip", type = "threshold", kind = "heart_rate", direction = "above", level = 120, clearLevel = 80, priority = "low" } },
            });
            Assert.Equal(HttpStatusCode.OK, rules.StatusCode);
            devices.Add(new ResendingDevice(deviceId, patientId, token, start, Batches, ReadingsPerBatch)
            {
                HeartRates = seq => [.. Enumerable.Repeat(seq % 2 == 0 ? 130.0 : 60.0, ReadingsPerBatch)],
            });
        }

        using var loadDone = new CancellationTokenSource(TimeSpan.FromMinutes(4));
        var load = devices.Select(device => device.SendAllAsync(() => Devices.ConnectMqttAsync(server, device.DeviceId, device.Token), loadDone.Token)).ToList();
        while (devices.Any(device => device.Acked < 20))
        {
            await Task.Delay(10);
        }

        // Each Redis round trip now takes two seconds or more, so each grain call longer than SlowCommitWait.
        proxy.Delay = TimeSpan.FromSeconds(1);
        var ackedWhenSlowed = devices.Sum(device => device.Acked);
        var health = await Eventually.ReadAsync(server.HealthAsync, answer => answer.Body.Contains("live state is slower than the load", StringComparison.Ordinal));
        output.WriteLine($"health: {health.Body}; waiting on grains: {WaitingOnGrains(await server.Http.GetStringAsync("/metrics"))}; {string.Join("; ", devices)}");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, health.StatusCode);
        Assert.Contains("commits have waited", health.Body, StringComparison.Ordinal);

        // The loop waits only once the grains hold the bound's worth of readings; until then commits and acks went on.
        var waiting = WaitingOnGrains(await server.Http.GetStringAsync("/metrics"));
        var ackedWhileSlow = devices.Sum(device => device.Acked) - ackedWhenSlowed;
        output.WriteLine($"readings waiting on grains: {waiting}; batches acked after Redis slowed: {ackedWhileSlow}");
        Assert.True(waiting >= Bound, $"the loop waited with {waiting} readings on grains, under the bound of {Bound}");
        Assert.True(ackedWhileSlow > 0, "acks stopped at once, before the bound was reached");
        Assert.True(devices.All(device => device.Acked < Batches), "the devices finished while the grains were slow");

        proxy.Delay = TimeSpan.Zero;
        await Task.WhenAll(load);
        await series.FlushAsync();
        foreach (var device in devices)
        {
            await device.AssertStoredOnceAsync(server, output);
        }

        var healthy = await Eventually.ReadAsync(server.HealthAsync, answer => answer.StatusCode == HttpStatusCode.OK);
        Assert.Equal(HttpStatusCode.OK, healthy.StatusCode);
    }

    private static long WaitingOnGrains(string metrics) =>
        GrainCallReadings().Match(metrics) is { Success: true } match ? long.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture) : 0;

    [GeneratedRegex(@"^telemetry_grain_calls_readings(?:\{[^}]*\})? (\d+)", RegexOptions.Multiline)]
    private static partial Regex GrainCallReadings();
}
