using MQTTnet;

namespace Telemetry.EndToEnd.Tests;

/// <summary>Ack means committed: a server killed with SIGKILL after acking loses nothing and stores no resend twice.</summary>
public sealed class CrashRecoveryTests
{
    [Fact]
    public async Task Every_acked_reading_survives_a_hard_kill_and_a_full_resend_stores_nothing_twice()
    {
        await using var server = await TelemetryServer.StartNewAsync();
        var token = await server.ProvisionAsync("crash-watch", "p-crash");
        var start = Devices.RecentMinute(10);
        var batches = Enumerable.Range(1, 40)
            .Select(seq => Devices.JsonHeartRates((ulong)seq, start.AddSeconds((seq - 1) * 5), Enumerable.Range(0, 5).Select(i => 60.0 + i).ToArray()))
            .ToList();

        using (var client = await Devices.ConnectMqttAsync(server, "crash-watch", token))
        {
            foreach (var batch in batches)
            {
                var ack = await Devices.PublishAsync(client, "devices/crash-watch/vitals", batch);
                Assert.Equal(MqttClientPublishReasonCode.Success, ack.ReasonCode);
            }
        }

        await server.KillAsync();
        await server.StartAsync();

        var afterCrash = await server.TrendAsync("p-crash", "heart_rate", start, start.AddMinutes(5), count: 200);
        Assert.Equal(200, afterCrash.TotalCount);

        // The start knows the stop was not clean, and has the windows the grains held open recomputed.
        Assert.Contains("Recomputed the windows the unclean stop left open, of 1 patients", await server.OutputWhenAsync("the unclean stop left open"));

        // The device did not trust the acks it got before the crash and sends everything again.
        using (var client = await Devices.ConnectMqttAsync(server, "crash-watch", token))
        {
            foreach (var batch in batches)
            {
                var ack = await Devices.PublishAsync(client, "devices/crash-watch/vitals", batch);
                Assert.Equal(MqttClientPublishReasonCode.Success, ack.ReasonCode);
            }
        }

        var afterResend = await server.TrendAsync("p-crash", "heart_rate", start, start.AddMinutes(5), count: 200);
        Assert.Equal(200, afterResend.TotalCount);
        Assert.All(afterResend.Points, point => Assert.Equal(62, point.Mean));
    }
}
