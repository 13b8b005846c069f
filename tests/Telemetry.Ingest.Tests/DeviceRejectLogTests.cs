using Microsoft.Extensions.Time.Testing;

namespace Telemetry.Ingest.Tests;

public sealed class DeviceRejectLogTests
{
    [Fact]
    public void A_device_keeps_its_latest_refusals_newest_first()
    {
        var clock = new FakeTimeProvider(new DateTimeOffset(2026, 12, 5, 10, 0, 0, TimeSpan.Zero));
        var log = new DeviceRejectLog(clock);
        for (var i = 0; i < DeviceRejectLog.PerDevice + 5; i++)
        {
            log.Record("watch-1", "mqtt", $"refusal {i}");
            clock.Advance(TimeSpan.FromSeconds(1));
        }

        var latest = log.Latest("watch-1");

        Assert.Equal(DeviceRejectLog.PerDevice, latest.Count);
        Assert.Equal($"refusal {DeviceRejectLog.PerDevice + 4}", latest[0].Reason);
        Assert.Equal("refusal 5", latest[^1].Reason);
        Assert.Empty(log.Latest("watch-2"));
    }

    [Fact]
    public void Once_it_holds_as_many_devices_as_it_may_it_forgets_those_refused_longest_ago_and_records_a_new_one()
    {
        var clock = new FakeTimeProvider(new DateTimeOffset(2026, 12, 5, 10, 0, 0, TimeSpan.Zero));
        var log = new DeviceRejectLog(clock);
        for (var i = 0; i < DeviceRejectLog.MaxDevices; i++)
        {
            log.Record($"device-{i}", "mqtt", "malformed");
            clock.Advance(TimeSpan.FromMilliseconds(1));
        }

        // The first device is refused again: it is now among the latest.
        log.Record("device-0", "mqtt", "malformed again");

        log.Record("device-new", "grpc", "too large");

        Assert.Equal("too large", Assert.Single(log.Latest("device-new")).Reason);
        Assert.Equal(2, log.Latest("device-0").Count);
        Assert.Empty(log.Latest("device-1"));
        Assert.Empty(log.Latest($"device-{(DeviceRejectLog.MaxDevices / 10) - 1}"));
        Assert.Single(log.Latest($"device-{(DeviceRejectLog.MaxDevices / 10) + 1}"));
        Assert.Single(log.Latest($"device-{DeviceRejectLog.MaxDevices - 1}"));
    }
}
