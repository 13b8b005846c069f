using System.Diagnostics;

namespace Telemetry.EndToEnd.Tests;

/// <summary>A foreign MQTT client, Debian's mosquitto_pub, publishing SenML as a device would.</summary>
public sealed class MosquittoClientTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private TelemetryServer Server => fixture.Server;

    [Fact]
    public async Task Mosquitto_pub_publishes_senml_that_lands_in_the_trend()
    {
        var token = await Server.ProvisionAsync("mosq-watch", "p-mosq-1");
        var start = Devices.RecentMinute();
        var senml = $$"""[{"bn":"mosq-watch:","bt":{{start.ToUnixTimeSeconds()}},"n":"heart_rate","u":"beat/min","v":72},{"n":"heart_rate","u":"beat/min","v":76,"t":2},{"n":"spo2","u":"%","v":97,"t":1}]""";

        var (exitCode, output) = await RunAsync("mosquitto_pub",
            "-h", "127.0.0.1", "-p", Server.MqttPort.ToString(), "-V", "mqttv5", "-q", "1", "-d",
            "-i", "mosq-watch", "-u", "mosq-watch", "-P", token, "-t", "devices/mosq-watch/vitals", "-m", senml);

        Assert.True(exitCode == 0, output);
        Assert.Contains("received PUBACK (Mid: 1, RC:0)", output);
        var heart = Assert.Single((await Server.TrendAsync("p-mosq-1", "heart_rate", start, start.AddMinutes(1), count: 2)).Points);
        Assert.Equal(2, heart.Count);
        Assert.Equal(74, heart.Mean);
        var oxygen = Assert.Single((await Server.TrendAsync("p-mosq-1", "59408-5", start, start.AddMinutes(1), count: 1)).Points);
        Assert.Equal(97, oxygen.Mean);
    }

    [Fact]
    public async Task Mosquitto_pub_with_a_wrong_token_is_refused()
    {
        await Server.ProvisionAsync("mosq-refused", "p-mosq-2");

        var (exitCode, output) = await RunAsync("mosquitto_pub",
            "-h", "127.0.0.1", "-p", Server.MqttPort.ToString(), "-V", "mqttv311", "-q", "1",
            "-i", "mosq-refused", "-u", "mosq-refused", "-P", "mosq-refused." + new string('a', 64), "-t", "devices/mosq-refused/vitals", "-m", "[]");

        Assert.NotEqual(0, exitCode);
        Assert.Contains("bad user name or password", output, StringComparison.OrdinalIgnoreCase);
    }

    private static async Task<(int ExitCode, string Output)> RunAsync(string file, params string[] arguments)
    {
        var start = new ProcessStartInfo(file, arguments) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"{file} did not start");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
        return (process.ExitCode, await stdout + await stderr);
    }
}
