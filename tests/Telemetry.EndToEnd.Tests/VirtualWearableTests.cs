extern alias simulator;

using Google.Protobuf;
using simulator::Telemetry.Simulator;
using Xunit;

namespace Telemetry.EndToEnd.Tests;

/// <summary>
/// The load generator's wearable refills one batch per message instead of making a new one: what it sends must be what
/// a new batch would have held, with nothing left over from the message before.
/// </summary>
public sealed class VirtualWearableTests
{
    [Fact]
    public void A_reused_batch_holds_what_a_new_batch_would_and_nothing_of_the_one_before()
    {
        var fresh = new VirtualWearable("watch-1", "p-1", "unused", seed: 7);
        var reused = new VirtualWearable("watch-1", "p-1", "unused", seed: 7);
        var startMs = DateTimeOffset.Parse("2026-12-03T08:00:00Z").ToUnixTimeMilliseconds();

        // Sizes that change which vitals a batch holds: every kind, then one reading (one kind), then a few.
        foreach (var count in new[] { 500, 1, 20, 1, 3, 500 })
        {
            var expected = fresh.NextBatch(startMs, intervalMs: 1, count);
            var actual = reused.NextBatchReused(startMs, intervalMs: 1, count);

            Assert.Equal(expected.ToByteArray(), actual.ToByteArray());
            Assert.Equal(count, actual.Series.Sum(series => series.Values.Count));
            startMs += count;
        }
    }
}
