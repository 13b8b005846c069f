using System.Net;
using Telemetry.Testing;
using Xunit.Abstractions;

namespace Telemetry.EndToEnd.Tests;

/// <summary>
/// The raw store on its own server (VictoriaMetrics) lost while devices stream to Telemetry, then back: stopped and
/// started again, or reached through a proxy that swallows its answers for a while (half-open: the writes arrive and
/// are stored, but the server never hears so, and writes them again). Devices get no acks meanwhile and health says
/// why, then everything resumes by itself and every reading is stored once.
/// </summary>
public sealed class SeriesStoreOutageTests(ITestOutputHelper output)
{
    private const int Batches = 200;
    private const int ReadingsPerBatch = 5;

    [Fact]
    public async Task Health_follows_the_series_server_while_no_device_sends()
    {
        await using var series = await VictoriaMetrics.StartNewAsync();
        await using var server = await TelemetryServer.StartNewAsync(new Dictionary<string, string>
        {
            ["Telemetry__Storage__RawStore"] = "VictoriaMetrics",
            ["Telemetry__Storage__VictoriaMetrics__Url"] = series.Url,
        });
        Assert.Equal(HttpStatusCode.OK, (await server.HealthAsync()).StatusCode);

        // No commit runs to notice it: the health check asks the server itself.
        await series.StopAsync();
        var away = await Eventually.ReadAsync(server.HealthAsync, answer => answer.StatusCode == HttpStatusCode.ServiceUnavailable);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, away.StatusCode);
        Assert.Contains("does not answer", away.Body, StringComparison.Ordinal);

        // An export that cannot read its first readings answers as failed, not as a 200 file holding its header alone.
        using var export = await server.Http.GetAsync("/api/patients/outage-p1/export.csv?kind=heart_rate");
        Assert.True((int)export.StatusCode >= 500, $"the export answered {export.StatusCode}");
        Assert.Equal("application/problem+json", export.Content.Headers.ContentType?.MediaType);

        await series.StartAsync();
        Assert.Equal(HttpStatusCode.OK, (await Eventually.ReadAsync(server.HealthAsync, answer => answer.StatusCode == HttpStatusCode.OK)).StatusCode);
    }

    [Fact]
    public async Task Series_server_settings_that_would_double_readings_are_reported_on_health()
    {
        // Run without deduplication, VictoriaMetrics keeps a reading written twice (a commit retried) twice.
        await using var series = await VictoriaMetrics.StartNewAsync(dedupInterval: null);
        await using var server = await TelemetryServer.StartNewAsync(new Dictionary<string, string>
        {
            ["Telemetry__Storage__RawStore"] = "VictoriaMetrics",
            ["Telemetry__Storage__VictoriaMetrics__Url"] = series.Url,
        });

        var health = await Eventually.ReadAsync(server.HealthAsync, answer => answer.Body.Contains("does not deduplicate", StringComparison.Ordinal));
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
        Assert.Contains("\"status\":\"Degraded\"", health.Body, StringComparison.Ordinal);
        Assert.Contains("-dedup.minScrapeInterval=1ms", health.Body, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("stopped")]
    [InlineData("half-open")]
    public async Task A_store_lost_mid_stream_stops_the_acks_and_loses_nothing_when_it_returns(string fault)
    {
        await using var series = await VictoriaMetrics.StartNewAsync();
        await using var proxy = new FaultyProxy(series.Port);
        await using var server = await TelemetryServer.StartNewAsync(new Dictionary<string, string>
        {
            ["Telemetry__Storage__RawStore"] = "VictoriaMetrics",
            ["Telemetry__Storage__VictoriaMetrics__Url"] = $"http://127.0.0.1:{proxy.Port}",
            ["Telemetry__Storage__VictoriaMetrics__RequestTimeout"] = "00:00:01",
            ["Telemetry__Storage__VictoriaMetrics__RetryFor"] = "00:00:01",
            ["Telemetry__Storage__VictoriaMetrics__RetryDelay"] = "00:00:00.050",
            ["Telemetry__Storage__VictoriaMetrics__MaxRetryDelay"] = "00:00:00.200",
        });
        var start = Devices.RecentMinute(60);
        var devices = new List<ResendingDevice>();
        for (var i = 0; i < 2; i++)
        {
            var deviceId = $"outage-watch-{i}";
            devices.Add(new ResendingDevice(deviceId, $"p-outage-{i}", await server.ProvisionAsync(deviceId, $"p-outage-{i}"), start, Batches, ReadingsPerBatch));
        }

        using var loadDone = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var load = devices.Select(device => device.SendAllAsync(() => Devices.ConnectMqttAsync(server, device.DeviceId, device.Token), loadDone.Token)).ToList();
        while (devices.Any(device => device.Acked < Batches / 4))
        {
            await Task.Delay(10);
        }

        if (fault == "stopped")
        {
            await series.StopAsync();
        }
        else
        {
            proxy.Blackhole = true;
        }

        // Health turns unready with the reason, and while the store is away nothing more is acknowledged.
        var health = await Eventually.ReadAsync(server.HealthAsync, answer => answer.Body.Contains("the last commit to the raw store failed", StringComparison.Ordinal));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, health.StatusCode);
        Assert.Contains("the last commit to the raw store failed", health.Body, StringComparison.Ordinal);
        var ackedWhileAway = devices.Sum(device => device.Acked);
        await Task.Delay(TimeSpan.FromSeconds(2));

        // Each device is refused when the commit holding its publish fails, and each commit tries the store for up to
        // two seconds (a request timeout, then retries): a device whose publish went into a later commit hears later.
        var waited = System.Diagnostics.Stopwatch.StartNew();
        while (devices.Any(device => device.Refused == 0) && waited.Elapsed < TimeSpan.FromSeconds(20))
        {
            await Task.Delay(20);
        }

        Assert.Equal(ackedWhileAway, devices.Sum(device => device.Acked));
        Assert.All(devices, device => Assert.True(device.Refused > 0, $"{device} was never refused"));

        if (fault == "stopped")
        {
            await series.StartAsync();
        }
        else
        {
            // The connections that swallowed answers are cut, as a client's timeout or a router would.
            proxy.Blackhole = false;
            proxy.CutAll();
        }

        await Task.WhenAll(load);

        await series.FlushAsync();
        foreach (var device in devices)
        {
            await device.AssertStoredOnceAsync(server, output, fault);
        }

        Assert.Equal(HttpStatusCode.OK, (await server.HealthAsync()).StatusCode);
    }
}
