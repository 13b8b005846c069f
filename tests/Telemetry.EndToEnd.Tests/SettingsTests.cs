namespace Telemetry.EndToEnd.Tests;

/// <summary>Settings that cannot work together are refused at start, with what to change.</summary>
public sealed class SettingsTests
{
    [Theory]
    [InlineData("30")]
    [InlineData("7")]
    public async Task Raw_readings_kept_no_longer_than_the_backfill_horizon_are_refused_at_start(string rawDays)
    {
        await using var server = new TelemetryServer(new Dictionary<string, string> { ["Telemetry__Retention__RawDays"] = rawDays });

        var refused = await Assert.ThrowsAsync<InvalidOperationException>(server.StartAsync);

        Assert.Contains("Telemetry:Retention:RawDays must be 0 (forever) or at least a day more than Telemetry:Ingest:BackfillHorizon", refused.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("Telemetry__Server__ListenAddress", "not-an-address", "ListenAddress")]
    [InlineData("Telemetry__Ingest__BackfillHorizon", "00:00:00", "BackfillHorizon")]
    public async Task A_value_that_cannot_work_stops_the_start_naming_its_setting(string key, string value, string named)
    {
        await using var server = new TelemetryServer(new Dictionary<string, string> { [key] = value });

        var refused = await Assert.ThrowsAsync<InvalidOperationException>(server.StartAsync);

        Assert.Contains(named, refused.Message, StringComparison.Ordinal);
    }
}
