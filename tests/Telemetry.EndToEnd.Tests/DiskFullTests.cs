using MQTTnet;
using Telemetry.Testing;

namespace Telemetry.EndToEnd.Tests;

/// <summary>
/// The store's disk fills up under a load: the server stops acking, says why on /healthz, loses nothing it acked, and
/// takes readings again by itself once there is room. The store sits on a small tmpfs of its own.
/// </summary>
public sealed class DiskFullTests : IAsyncLifetime
{
    private SmallDisk _disk = null!;

    public async Task InitializeAsync() => _disk = await SmallDisk.MountAsync("48m");

    public async Task DisposeAsync() => await _disk.DisposeAsync();

    [Fact]
    public async Task A_full_disk_stops_acks_turns_health_unready_and_recovers_when_space_returns()
    {
        await using var server = await TelemetryServer.StartNewAsync(new Dictionary<string, string>
        {
            ["Telemetry__Storage__DuckDb__Path"] = Path.Combine(_disk.Path, "telemetry.duckdb"),
        });
        var token = await server.ProvisionAsync("disk-watch", "p-disk");
        using var client = await Devices.ConnectMqttAsync(server, "disk-watch", token);
        // Each batch is ten seconds later than the one before, from before yesterday: every grain call recomputes its
        // windows from the raw store and writes them, which fails too while the disk is full (and is repaired later).
        var start = Devices.RecentMinute(60 * 50);
        var acked = new List<int>();
        var seq = 0;

        async Task<MqttClientPublishResult> SendAsync() =>
            await Devices.PublishAsync(client, "devices/disk-watch/vitals", Devices.JsonHeartRates((ulong)(seq + 1), start.AddSeconds(seq * 10), Enumerable.Repeat(70.0, 10).ToArray()));

        for (; seq < 20; seq++)
        {
            Assert.Equal(MqttClientPublishReasonCode.Success, (await SendAsync()).ReasonCode);
            acked.Add(seq);
        }

        // Fill the disk but for a sliver.
        var filler = Path.Combine(_disk.Path, "filler");
        await FillAsync(filler);

        MqttClientPublishResult refused;
        var tries = 0;
        while (true)
        {
            refused = await SendAsync();
            if (refused.ReasonCode != MqttClientPublishReasonCode.Success)
            {
                break;
            }

            acked.Add(seq++);
            Assert.True(++tries < 2_000, "the store never refused a commit on a full disk");
        }

        Assert.Equal(MqttClientPublishReasonCode.ImplementationSpecificError, refused.ReasonCode);
        Assert.Contains("No space left on device", await server.OutputWhenAsync("No space left on device"));
        using (var health = await server.Http.GetAsync("/healthz"))
        {
            Assert.Equal(System.Net.HttpStatusCode.ServiceUnavailable, health.StatusCode);
            Assert.Contains("commit", await health.Content.ReadAsStringAsync());
        }

        // Room again: the same batch is taken, without a restart.
        File.Delete(filler);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        MqttClientPublishResult retried;
        do
        {
            await Task.Delay(200);
            retried = await SendAsync();
        }
        while (retried.ReasonCode != MqttClientPublishReasonCode.Success && DateTime.UtcNow < deadline);

        Assert.True(retried.ReasonCode == MqttClientPublishReasonCode.Success, $"still refused after space returned: {retried.ReasonString}\n{server.Output}");
        acked.Add(seq++);
        using (var health = await server.Http.GetAsync("/healthz"))
        {
            Assert.Equal(System.Net.HttpStatusCode.OK, health.StatusCode);
        }

        foreach (var resolution in (string[])["1m", "1h"])
        {
            var trend = await server.TrendWhenAsync("p-disk", "heart_rate", start, start.AddSeconds(seq * 10).AddHours(1), resolution, t => t.TotalCount == acked.Count * 10);
            Assert.True(trend.TotalCount == acked.Count * 10, $"the {resolution} trend holds {trend.TotalCount} readings of {acked.Count * 10}");
        }
    }

    private static async Task FillAsync(string path)
    {
        await using var file = new FileStream(path, FileMode.Create, FileAccess.Write);
        var block = new byte[1 << 20];
        try
        {
            while (true)
            {
                await file.WriteAsync(block);
                await file.FlushAsync();
            }
        }
        catch (IOException)
        {
            // Full. Give back a little, so the server can still write a few commits before it too runs out.
        }

        file.SetLength(Math.Max(0, file.Length - (1 << 16)));
    }
}
