using Telemetry.Core.Readings;
using Telemetry.Core.Vitals;

namespace Telemetry.Storage.Tests;

/// <summary>The implausible readings of failed commits: each judged once when found kept, the oldest forgotten past the bound.</summary>
public sealed class UnjudgedQuarantineTests
{
    [Fact]
    public void A_reading_of_a_failed_commit_is_taken_once()
    {
        var unjudged = new UnjudgedQuarantine();
        unjudged.Note([new DeviceBatch("watch-1", "patient-1", 0, ReadOnlyMemory<VitalReading>.Empty) { Quarantined = new[] { new VitalReading(VitalKind.HeartRate, 1_000, 400) } }]);

        Assert.False(unjudged.Take("watch-2", VitalKind.HeartRate, 1_000));
        Assert.True(unjudged.Take("watch-1", VitalKind.HeartRate, 1_000));
        Assert.False(unjudged.Take("watch-1", VitalKind.HeartRate, 1_000));
    }

    [Fact]
    public void Past_the_bound_the_oldest_are_forgotten()
    {
        var unjudged = new UnjudgedQuarantine();
        var readings = Enumerable.Range(0, UnjudgedQuarantine.Capacity + 1).Select(i => new VitalReading(VitalKind.HeartRate, i, 400)).ToArray();
        unjudged.Note([new DeviceBatch("watch-1", "patient-1", 0, ReadOnlyMemory<VitalReading>.Empty) { Quarantined = readings }]);

        Assert.False(unjudged.Take("watch-1", VitalKind.HeartRate, 0));
        Assert.True(unjudged.Take("watch-1", VitalKind.HeartRate, UnjudgedQuarantine.Capacity));
    }
}
