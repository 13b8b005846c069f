using System.Net;
using Telemetry.Testing;
using Xunit.Abstractions;

namespace Telemetry.EndToEnd.Tests;

/// <summary>
/// The raw store on its own server (VictoriaMetrics) stopped while devices stream to Telemetry, and started again:
/// devices get no acks meanwhile and health says why, then everything resumes by itself and every reading is stored once.
/// </summary>
public sealed class SeriesStoreOutageTests(ITestOutputHelper output)
{
    private const int Batches = 200;
    private const int ReadingsPerBatch = 5;

    [Fact]
    public async Task A_store_stopped_mid_stream_stops_the_acks_and_loses_nothing_when_it_returns()
    {
        await using var series = await VictoriaMetrics.StartNewAsync();
        await using var server = await TelemetryServer.StartNewAsync(new Dictionary<string, string>
        {
            ["Telemetry__Storage__RawStore"] = "VictoriaMetrics",
            ["Telemetry__Storage__VictoriaMetrics__Url"] = series.Url,
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

        await series.StopAsync();

        // Health turns unready with the reason, and while the store is away nothing more is acknowledged.
        var health = await Eventually.ReadAsync(
            async () =>
            {
                using var response = await server.Http.GetAsync("/healthz");
                return (response.StatusCode, Body: await response.Content.ReadAsStringAsync());
            },
            answer => answer.StatusCode == HttpStatusCode.ServiceUnavailable);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, health.StatusCode);
        Assert.Contains("the last commit to the raw store failed", health.Body, StringComparison.Ordinal);
        var ackedWhileAway = devices.Sum(device => device.Acked);
        await Task.Delay(TimeSpan.FromSeconds(2));
        Assert.Equal(ackedWhileAway, devices.Sum(device => device.Acked));
        Assert.All(devices, device => Assert.True(device.Refused > 0, $"{device} was never refused"));

        await series.StartAsync();
        await Task.WhenAll(load);

        await series.FlushAsync();
        foreach (var device in devices)
        {
            output.WriteLine(device.ToString());
            var rows = await server.RawHeartRatesAsync(device.PatientId, device.Start, device.End);
            Assert.Equal(device.Readings, rows.Count);
            Assert.Equal(rows.Count, rows.Distinct().Count());
        }

        using var healthy = await server.Http.GetAsync("/healthz");
        Assert.Equal(HttpStatusCode.OK, healthy.StatusCode);
    }
}
