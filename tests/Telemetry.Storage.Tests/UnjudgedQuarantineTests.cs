using Telemetry.Core.Readings;
using Telemetry.Core.Vitals;

namespace Telemetry.Storage.Tests;

/// <summary>The implausible readings failed commits were to hand on: remembered until a commit hands them on, the oldest forgotten past the bound.</summary>
public sealed class UnjudgedQuarantineTests
{
    [Fact]
    public void A_reading_a_failed_commit_was_to_hand_on_is_remembered_until_a_commit_hands_it_on()
    {
        var unjudged = new UnjudgedQuarantine();
        var (batches, outcomes) = Handing("watch-1", new VitalReading(VitalKind.HeartRate, 1_000, 400));

        unjudged.Failed(batches, outcomes);
        unjudged.Failed(batches, outcomes);
        Assert.False(unjudged.Contains("watch-2", VitalKind.HeartRate, 1_000));
        Assert.True(unjudged.Contains("watch-1", VitalKind.HeartRate, 1_000));

        unjudged.Committed(batches, outcomes);
        Assert.False(unjudged.Contains("watch-1", VitalKind.HeartRate, 1_000));
    }

    [Fact]
    public void Past_the_bound_the_oldest_are_forgotten_and_one_noted_again_keeps_its_new_place()
    {
        var unjudged = new UnjudgedQuarantine();
        Fail(unjudged, 0, 1);
        var handed = Handing("watch-1", Heart(0));
        unjudged.Committed(handed.Batches, handed.Outcomes);
        Fail(unjudged, 0);
        Fail(unjudged, [.. Enumerable.Range(2, UnjudgedQuarantine.Capacity - 2)]);

        // At the bound: the first reading's older place came up and did not take it out.
        Assert.True(unjudged.Contains("watch-1", VitalKind.HeartRate, 0));
        Assert.True(unjudged.Contains("watch-1", VitalKind.HeartRate, 1));

        // One more: the oldest still remembered goes.
        Fail(unjudged, -1);
        Assert.False(unjudged.Contains("watch-1", VitalKind.HeartRate, 1));
        Assert.True(unjudged.Contains("watch-1", VitalKind.HeartRate, 0));
        Assert.True(unjudged.Contains("watch-1", VitalKind.HeartRate, -1));
    }

    private static void Fail(UnjudgedQuarantine unjudged, params int[] times)
    {
        var (batches, outcomes) = Handing("watch-1", [.. times.Select(Heart)]);
        unjudged.Failed(batches, outcomes);
    }

    private static VitalReading Heart(int timestampMs) => new(VitalKind.HeartRate, timestampMs, 400);

    private static (DeviceBatch[] Batches, BatchOutcome[] Outcomes) Handing(string deviceId, params VitalReading[] quarantined) =>
        ([new DeviceBatch(deviceId, "patient-1", 0, ReadOnlyMemory<VitalReading>.Empty) { Quarantined = quarantined }],
         [new BatchOutcome(CommitOutcome.Stored, ReadOnlyMemory<VitalReading>.Empty, 0, quarantined)]);
}
