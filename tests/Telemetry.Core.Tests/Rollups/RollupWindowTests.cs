using Telemetry.Core.Rollups;

namespace Telemetry.Core.Tests.Rollups;

public sealed class RollupWindowTests
{
    private const long Start = 1_700_000_100_000;
    private const double Tolerance = 1e-9;

    [Fact]
    public void A_window_of_one_reading_holds_that_reading_everywhere()
    {
        var window = RollupWindow.Of(Start, Start + 5_000, 72);

        Assert.Equal(new RollupWindow(Start, 1, 72, 72, 72, 72 * 72, 72, Start + 5_000), window);
        Assert.Equal(72, window.Mean);
        Assert.Equal(0, window.StandardDeviation);
    }

    [Fact]
    public void Adding_readings_gives_count_sum_min_max_mean_and_population_standard_deviation()
    {
        double[] values = [2, 4, 4, 4, 5, 5, 7, 9];
        var window = RollupWindow.Of(Start, Start, values[0]);
        for (var i = 1; i < values.Length; i++)
        {
            window = window.Add(Start + (i * 1_000), values[i]);
        }

        Assert.Equal(8, window.Count);
        Assert.Equal(40, window.Sum);
        Assert.Equal(2, window.Min);
        Assert.Equal(9, window.Max);
        Assert.Equal(5, window.Mean, Tolerance);
        Assert.Equal(2, window.StandardDeviation, Tolerance);
        Assert.Equal(9, window.Last);
        Assert.Equal(Start + 7_000, window.LastMs);
        Assert.Equal(Start, window.StartMs);
    }

    [Fact]
    public void A_late_arriving_older_reading_does_not_become_the_last()
    {
        var window = RollupWindow.Of(Start, Start + 30_000, 80).Add(Start + 10_000, 60);

        Assert.Equal(80, window.Last);
        Assert.Equal(Start + 30_000, window.LastMs);
        Assert.Equal(60, window.Min);
        Assert.Equal(2, window.Count);
    }

    [Fact]
    public void Merging_two_windows_equals_adding_all_their_readings_to_one()
    {
        var first = RollupWindow.Of(Start, Start + 1_000, 70).Add(Start + 2_000, 90);
        var second = RollupWindow.Of(Start, Start + 3_000, 60).Add(Start + 4_000, 100);
        var allAtOnce = RollupWindow.Of(Start, Start + 1_000, 70)
            .Add(Start + 2_000, 90).Add(Start + 3_000, 60).Add(Start + 4_000, 100);

        var merged = first.Merge(second);

        Assert.Equal(allAtOnce, merged);
        Assert.Equal(4, merged.Count);
        Assert.Equal(80, merged.Mean, Tolerance);
        Assert.Equal(100, merged.Last);
    }

    [Fact]
    public void Merging_keeps_the_last_reading_of_whichever_window_saw_the_later_one()
    {
        var later = RollupWindow.Of(Start, Start + 50_000, 88);
        var earlier = RollupWindow.Of(Start, Start + 20_000, 66);

        var merged = later.Merge(earlier);

        Assert.Equal(88, merged.Last);
        Assert.Equal(Start + 50_000, merged.LastMs);
    }

    [Fact]
    public void Merging_with_an_empty_window_changes_nothing()
    {
        var window = RollupWindow.Of(Start, Start + 1_000, 70);

        Assert.Equal(window, window.Merge(default));
    }

    [Fact]
    public void An_empty_window_merged_with_another_takes_its_readings_and_keeps_its_own_start()
    {
        var empty = new RollupWindow { StartMs = Start };
        var other = RollupWindow.Of(0, Start + 1_000, 70);

        var merged = empty.Merge(other);

        Assert.Equal(Start, merged.StartMs);
        Assert.Equal(1, merged.Count);
        Assert.Equal(70, merged.Last);
    }

    [Fact]
    public void An_empty_window_has_no_mean_or_standard_deviation()
    {
        RollupWindow empty = default;

        Assert.True(double.IsNaN(empty.Mean));
        Assert.True(double.IsNaN(empty.StandardDeviation));
    }
}
