using System.Net;
using MQTTnet;
using Telemetry.Testing;
using Xunit.Abstractions;

namespace Telemetry.EndToEnd.Tests;

/// <summary>
/// Redis, which keeps a cluster's shared state, stopped while devices stream and started again: the readings go on
/// being committed to the series store and acknowledged meanwhile, health says what is missing, and everything
/// resumes by itself, with every reading stored once.
/// </summary>
public sealed class ClusterStoreOutageTests(ITestOutputHelper output)
{
    private const int Batches = 800;
    private const int ReadingsPerBatch = 5;

    [Fact]
    public async Task Redis_stopped_mid_stream_costs_no_acked_reading_and_health_comes_back()
    {
        await using var redis = await RedisServer.StartAsync(persistent: true);
        await using var series = await VictoriaMetrics.StartNewAsync();
        await using var server = await TelemetryServer.StartNewAsync(new Dictionary<string, string>
        {
            ["Telemetry__Cluster__Redis"] = redis.ConnectionString,
            ["Telemetry__Cluster__AdvertisedAddress"] = "127.0.0.1",
            ["Telemetry__Storage__RawStore"] = "VictoriaMetrics",
            ["Telemetry__Storage__VictoriaMetrics__Url"] = series.Url,
        });
        var start = Devices.RecentMinute(60);
        var devices = new List<ResendingDevice>();
        for (var i = 0; i < 2; i++)
        {
            var deviceId = $"redis-outage-watch-{i}";
            devices.Add(new ResendingDevice(deviceId, $"p-redis-outage-{i}", await server.ProvisionAsync(deviceId, $"p-redis-outage-{i}"), start, Batches, ReadingsPerBatch));
        }

        using var loadDone = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var load = devices.Select(device => device.SendAllAsync(() => Devices.ConnectMqttAsync(server, device.DeviceId, device.Token), loadDone.Token)).ToList();
        while (devices.Any(device => device.Acked < Batches / 4))
        {
            await Task.Delay(10);
        }

        await redis.StopAsync();
        var ackedWhenStopped = devices.Sum(device => device.Acked);
        var health = await Eventually.ReadAsync(server.HealthAsync, answer => answer.StatusCode == HttpStatusCode.ServiceUnavailable);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, health.StatusCode);
        Assert.Contains("Redis does not answer", health.Body, StringComparison.Ordinal);

        // The readings are safe in the series store, so the devices are still acknowledged while Redis is away (read
        // after its health says so, which can take less time than a device's next batch).
        var ackedWhileAway = await Eventually.ReadAsync(() => Task.FromResult(devices.Sum(device => device.Acked) - ackedWhenStopped), acked => acked > 0, TimeSpan.FromSeconds(10));
        output.WriteLine($"acked while Redis was away: {ackedWhileAway} batches");
        Assert.True(ackedWhileAway > 0 && devices.All(device => device.Acked < Batches), $"acks stopped while Redis was away: {string.Join("; ", devices)}");

        // A device the registry has to read from Redis (one this server has not seen) cannot be checked meanwhile: that
        // is "server unavailable" (try again later), not a wrong token and not a dropped connection.
        var ghost = $"ghost-watch.{new string('a', 64)}";
        Assert.Equal(MqttClientConnectResultCode.ServerUnavailable, await Devices.TryConnectMqttAsync(Devices.MqttOptions(server.MqttPort, "ghost-watch", "ghost-watch", ghost).Build()));
        using (var upload = new HttpRequestMessage(HttpMethod.Post, "/api/devices/ghost-watch/readings") { Content = new StringContent("[]", System.Text.Encoding.UTF8, "application/json") })
        {
            upload.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", ghost);
            using var refused = await server.Http.SendAsync(upload);
            Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
            Assert.NotNull(refused.Headers.RetryAfter);
        }

        await redis.RestartAsync();
        await Task.WhenAll(load);

        await series.FlushAsync();
        foreach (var device in devices)
        {
            await device.AssertStoredOnceAsync(server, output);
        }

        var healthy = await Eventually.ReadAsync(server.HealthAsync, answer => answer.StatusCode == HttpStatusCode.OK);
        Assert.Equal(HttpStatusCode.OK, healthy.StatusCode);
    }
}
