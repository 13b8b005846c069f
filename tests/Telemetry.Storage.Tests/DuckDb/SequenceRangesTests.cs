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

    [Fact]
    public void A_device_numbering_its_batches_by_a_clock_keeps_its_latest_ranges_in_order()
    {
        var ranges = new SequenceRanges();
        var start = 1_764_950_000_000UL;
        for (ulong i = 0; i < 10_000; i++)
        {
            ranges.Add(start + (i * 1_000));
        }

        Assert.Equal(SequenceRanges.MaxRanges, ranges.Ranges.Count);
        Assert.True(ranges.Contains(start + (9_999 * 1_000)));
        Assert.True(ranges.Contains(start + ((10_000 - SequenceRanges.MaxRanges) * 1_000)));
        Assert.False(ranges.Contains(start + ((10_000 - SequenceRanges.MaxRanges - 1) * 1_000)));
        Assert.Equal(ranges.Ranges.OrderBy(range => range.First), ranges.Ranges);

        // A gap that closes joins its neighbours, as before.
        ranges.Add(start + (9_998 * 1_000) + 1, start + (9_999 * 1_000) - 1);
        Assert.Equal((start + (9_998 * 1_000), start + (9_999 * 1_000)), ranges.Ranges[^1]);
        Assert.Equal(SequenceRanges.MaxRanges - 1, ranges.Ranges.Count);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void Any_order_of_numbers_and_ranges_gives_the_same_ranges_as_a_plain_set(int seed)
    {
        var random = new Random(seed);
        var ranges = new SequenceRanges();
        var numbers = new SortedSet<ulong>();
        for (var i = 0; i < 3_000; i++)
        {
            var first = (ulong)random.Next(0, 5_000);
            var last = first + (ulong)(random.Next(0, 10) == 0 ? random.Next(0, 40) : 0);
            ranges.Add(first, last);
            for (var number = first; number <= last; number++)
            {
                numbers.Add(number);
            }

            if (i % 100 == 0)
            {
                Assert.Equal(AsRanges(numbers), ranges.Ranges);
            }
        }

        Assert.Equal(AsRanges(numbers), ranges.Ranges);
        Assert.All(Enumerable.Range(0, 5_100), number => Assert.Equal(numbers.Contains((ulong)number), ranges.Contains((ulong)number)));
    }

    private static List<(ulong First, ulong Last)> AsRanges(SortedSet<ulong> numbers)
    {
        var ranges = new List<(ulong First, ulong Last)>();
        foreach (var number in numbers)
        {
            if (ranges.Count > 0 && ranges[^1].Last + 1 == number)
            {
                ranges[^1] = (ranges[^1].First, number);
            }
            else
            {
                ranges.Add((number, number));
            }
        }

        return ranges;
    }
}
