using Telemetry.Core.Storage;

namespace Telemetry.Core.Tests.Storage;

public sealed class TimeStretchesTests
{
    [Fact]
    public void Times_are_split_at_their_widest_gaps_of_the_length_given_and_no_more_often_than_allowed()
    {
        long[] times = [0, 10, 20, 1_000, 1_010, 5_000, 5_020, 5_030];

        Assert.Equal([(0L, 20L), (1_000L, 1_010L), (5_000L, 5_030L)], TimeStretches.Of(times, minGapMs: 100, maxStretches: 8));

        // Two at most: split at the widest gap only (1,010 to 5,000).
        Assert.Equal([(0L, 1_010L), (5_000L, 5_030L)], TimeStretches.Of(times, minGapMs: 100, maxStretches: 2));

        // Gaps shorter than asked are not split.
        Assert.Equal([(0L, 5_030L)], TimeStretches.Of(times, minGapMs: 5_000, maxStretches: 8));
        Assert.Equal([(7L, 7L)], TimeStretches.Of([7], minGapMs: 1, maxStretches: 8));
    }
}
