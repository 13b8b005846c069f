using Microsoft.Extensions.Time.Testing;
using Telemetry.Core.Rollups;
using Telemetry.Core.Vitals;
using Telemetry.Storage.Influx;

namespace Telemetry.Storage.Tests.Influx;

/// <summary>
/// The times of writing VictoriaMetrics' rollups are told apart by: each series' increase, whatever the clock does, and
/// a full memory forgets only the series the clock has caught up with.
/// </summary>
public sealed class SeriesRollupWriteTimeTests
{
    [Fact]
    public void A_series_whose_time_ran_ahead_of_the_clock_keeps_it_when_the_memory_fills()
    {
        var clock = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(1_800_000_000_000));
        var store = new SeriesRollupStore(null!, clock);
        var now = clock.GetUtcNow().ToUnixTimeMilliseconds();

        // A grain writes three windows of one series at once: the times run ahead of the clock.
        var busy = Window("p-busy");
        Assert.Equal([now, now + 1, now + 2], new[] { store.NextWriteTime(busy), store.NextWriteTime(busy), store.NextWriteTime(busy) });

        // Many other series fill the memory; a millisecond on, the next one makes it forget those the clock has passed.
        for (var i = 1; i < SeriesRollupStore.MaxRemembered; i++)
        {
            store.NextWriteTime(Window($"p-{i}"));
        }

        clock.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal(now + 1, store.NextWriteTime(Window("p-new")));

        // The busy series still goes on from its own time, not from the clock's (which would repeat one it gave).
        Assert.Equal(now + 3, store.NextWriteTime(busy));
    }

    [Fact]
    public void A_window_that_starts_ahead_of_the_servers_clock_is_written_at_its_start()
    {
        // A device whose clock runs five minutes fast closes a minute the server's clock has not reached.
        var clock = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(1_800_000_000_000));
        var store = new SeriesRollupStore(null!, clock);
        var ahead = new Rollup("p-fast", VitalKind.HeartRate, Resolution.Minute, RollupWindow.Of(1_800_000_300_000, 1_800_000_310_000, 70));

        Assert.Equal(1_800_000_300_000, store.NextWriteTime(ahead));
        Assert.Equal(1_800_000_300_001, store.NextWriteTime(ahead));
    }

    private static Rollup Window(string patientId) =>
        new(patientId, VitalKind.HeartRate, Resolution.Minute, RollupWindow.Of(1_799_999_940_000, 1_799_999_950_000, 70));
}
