using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace Telemetry.Ingest.Tests;

public sealed class DeviceRateLimiterTests
{
    private readonly FakeTimeProvider _clock = new(new DateTimeOffset(2026, 11, 25, 8, 0, 0, TimeSpan.Zero));
    private readonly DeviceRateLimiter _limiter;

    public DeviceRateLimiterTests() =>
        _limiter = new DeviceRateLimiter(Options.Create(new IngestOptions { MaxMessagesPerSecondPerDevice = 10, MaxUploadsPerMinutePerDevice = 6 }), _clock);

    [Fact]
    public void A_device_gets_two_seconds_of_its_rate_at_once_then_its_rate()
    {
        Assert.Equal(20, TakeAll("watch-1"));

        _clock.Advance(TimeSpan.FromMilliseconds(500));

        Assert.Equal(5, TakeAll("watch-1"));
        Assert.True(_limiter.TryTakeMessage("watch-2"));
    }

    [Fact]
    public async Task A_device_quiet_for_a_burst_period_is_forgotten_and_finds_its_full_allowance()
    {
        for (var i = 0; i < 1_000; i++)
        {
            Assert.True(_limiter.TryTakeMessage($"watch-{i}"));
            Assert.True(_limiter.TryTakeUpload($"watch-{i}"));
        }

        Assert.Equal(2_000, _limiter.BucketCount);
        _clock.Advance(TimeSpan.FromSeconds(2));
        TakeAll("watch-0");

        // The messages' buckets of the quiet devices are gone; the uploads' refill over a minute, so they stay.
        await BucketsHeld(1_001);
        _clock.Advance(TimeSpan.FromSeconds(58));
        Assert.True(_limiter.TryTakeUpload("watch-0"));

        await BucketsHeld(2);
        Assert.Equal(20, TakeAll("watch-1"));
    }

    // The sweep runs on the thread pool, after the take that found it due.
    private async Task BucketsHeld(int expected)
    {
        var waited = System.Diagnostics.Stopwatch.StartNew();
        while (_limiter.BucketCount != expected && waited.Elapsed < TimeSpan.FromSeconds(10))
        {
            await Task.Delay(10);
        }

        Assert.Equal(expected, _limiter.BucketCount);
    }

    [Fact]
    public void A_device_that_keeps_sending_keeps_its_spent_allowance()
    {
        TakeAll("watch-1");
        for (var i = 0; i < 10; i++)
        {
            _clock.Advance(TimeSpan.FromSeconds(1));
            Assert.Equal(10, TakeAll("watch-1"));
        }
    }

    private int TakeAll(string deviceId)
    {
        var taken = 0;
        while (_limiter.TryTakeMessage(deviceId))
        {
            taken++;
        }

        return taken;
    }
}
