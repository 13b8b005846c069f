using Telemetry.Storage.DuckDb;

namespace Telemetry.Storage.Tests.DuckDb;

public sealed class SequenceRangesTests
{
    [Fact]
    public void A_device_sending_in_order_has_one_range()
    {
        var ranges = new SequenceRanges();
        for (ulong sequence = 1; sequence <= 100; sequence++)
        {
            ranges.Add(sequence);
        }

        Assert.Equal([(1UL, 100UL)], ranges.Ranges);
        Assert.True(ranges.Contains(1));
        Assert.True(ranges.Contains(100));
        Assert.False(ranges.Contains(101));
        Assert.False(ranges.Contains(0));
    }

    [Fact]
    public void A_gap_stays_open_until_its_batch_comes_and_then_the_ranges_join()
    {
        var ranges = new SequenceRanges();
        ranges.Add(1, 3);
        ranges.Add(7);
        ranges.Add(5);
        ranges.Add(10, 12);

        Assert.Equal([(1UL, 3UL), (5UL, 5UL), (7UL, 7UL), (10UL, 12UL)], ranges.Ranges);
        Assert.False(ranges.Contains(4));
        Assert.False(ranges.Contains(6));

        ranges.Add(6);
        Assert.Equal([(1UL, 3UL), (5UL, 7UL), (10UL, 12UL)], ranges.Ranges);

        ranges.Add(2, 11);
        Assert.Equal([(1UL, 12UL)], ranges.Ranges);

        ranges.Add(0);
        ranges.Add(ulong.MaxValue);
        Assert.Equal([(0UL, 12UL), (ulong.MaxValue, ulong.MaxValue)], ranges.Ranges);
    }

    [Fact]
    public void Past_the_most_ranges_kept_the_oldest_is_forgotten()
    {
        var ranges = new SequenceRanges();
        for (var i = 0; i <= SequenceRanges.MaxRanges; i++)
        {
            ranges.Add((ulong)(i * 2) + 10);
        }

        Assert.Equal(SequenceRanges.MaxRanges, ranges.Ranges.Count);
        Assert.False(ranges.Contains(10));
        Assert.True(ranges.Contains(12));

        // A range older than every one kept is forgotten at once.
        ranges.Add(1);
        Assert.False(ranges.Contains(1));
        Assert.True(ranges.Contains(12));
        Assert.Equal(SequenceRanges.MaxRanges, ranges.Ranges.Count);
    }
}
