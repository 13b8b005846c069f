using Telemetry.Grains.Patients;

namespace Telemetry.Grains.Tests;

/// <summary>The latest commits a patient's grain applied: what a repair finds there, and what it no longer finds.</summary>
public sealed class RecentCommitsTests
{
    [Fact]
    public void A_commit_applied_is_found_and_noted_once()
    {
        var recent = new RecentCommits();

        Assert.False(recent.Contains(7));
        Assert.True(recent.Add(7));
        Assert.True(recent.Add(9));
        Assert.False(recent.Add(7));

        Assert.True(recent.Contains(7));
        Assert.True(recent.Contains(9));
        Assert.False(recent.Contains(8));
        Assert.Equal(2, recent.Count);
    }

    [Fact]
    public void Past_the_capacity_the_oldest_commits_are_forgotten_first_and_the_latest_kept()
    {
        var recent = new RecentCommits();
        const int Extra = 10;
        for (long id = 1; id <= RecentCommits.Capacity + Extra; id++)
        {
            recent.Add(id * 100);
        }

        Assert.Equal(RecentCommits.Capacity, recent.Count);
        for (long id = 1; id <= Extra; id++)
        {
            Assert.False(recent.Contains(id * 100));
        }

        for (long id = Extra + 1; id <= RecentCommits.Capacity + Extra; id++)
        {
            Assert.True(recent.Contains(id * 100));
        }

        // Wrapping again keeps forgetting in order.
        recent.Add(1);
        Assert.False(recent.Contains((Extra + 1) * 100));
        Assert.True(recent.Contains((Extra + 2) * 100));
        Assert.True(recent.Contains(1));
    }

    [Fact]
    public void Cleared_it_holds_nothing_and_fills_again()
    {
        var recent = new RecentCommits();
        for (long id = 1; id <= RecentCommits.Capacity + 3; id++)
        {
            recent.Add(id);
        }

        recent.Clear();

        Assert.Equal(0, recent.Count);
        Assert.False(recent.Contains(RecentCommits.Capacity + 3));
        Assert.True(recent.Add(5));
        Assert.True(recent.Contains(5));
        Assert.False(recent.Contains(6));
    }
}
