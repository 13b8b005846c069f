using Telemetry.Core.Readings;
using Telemetry.Core.Rollups;
using Telemetry.Core.Vitals;
using Telemetry.Storage.DuckDb;
using static Telemetry.Storage.Tests.DuckDb.Batches;

namespace Telemetry.Storage.Tests.DuckDb;

public sealed class SequenceDeduplicationTests : IDisposable
{
    private readonly RawStoreFile _file = new();

    private DuckDbRawSeriesStore Store => _file.Store;

    public void Dispose() => _file.Dispose();

    [Fact]
    public async Task Resent_batch_is_reported_duplicate_and_not_stored_twice()
    {
        var batch = Of("watch-1", "patient-1", 5, new VitalReading(VitalKind.HeartRate, T0, 70), new VitalReading(VitalKind.HeartRate, T0 + 1_000, 72));

        var first = Store.Commit(batch);
        var resent = Store.Commit(batch);

        Assert.Equal([CommitOutcome.Stored], first.Outcomes);
        Assert.Equal([CommitOutcome.Duplicate], resent.Outcomes);
        Assert.Equal(2, await StoredCount("patient-1"));
    }

    [Fact]
    public async Task A_batch_left_behind_by_a_failed_commit_is_stored_when_sent_again_after_later_ones()
    {
        // Batch 41's commit failed, 42 and 43 went through; the device then resends 41 and, not trusting its acks, 42.
        Store.Commit(Of("watch-1", "patient-1", 42, new VitalReading(VitalKind.HeartRate, T0 + 1_000, 71)));
        Store.Commit(Of("watch-1", "patient-1", 43, new VitalReading(VitalKind.HeartRate, T0 + 2_000, 72)));

        var missing = Store.Commit(Of("watch-1", "patient-1", 41, new VitalReading(VitalKind.HeartRate, T0, 70)));
        var resent = Store.Commit(Of("watch-1", "patient-1", 42, new VitalReading(VitalKind.HeartRate, T0 + 1_000, 71)));

        Assert.Equal([CommitOutcome.Stored], missing.Outcomes);
        Assert.Equal([CommitOutcome.Duplicate], resent.Outcomes);
        var stored = await StoredValues("patient-1");
        Assert.Equal([70.0, 71.0, 72.0], stored);
    }

    [Fact]
    public async Task Gaps_and_committed_ranges_survive_reopening_the_file()
    {
        foreach (var sequence in new ulong[] { 1, 2, 3, 5, 6 })
        {
            Store.Commit(Of("watch-1", "patient-1", sequence, new VitalReading(VitalKind.HeartRate, T0 + ((long)sequence * 1_000), 60 + sequence)));
        }

        _file.Reopen();

        var outcomes = Enumerable.Range(1, 7)
            .Select(sequence => Store.Commit(Of("watch-1", "patient-1", (ulong)sequence, new VitalReading(VitalKind.HeartRate, T0 + (sequence * 1_000), 60 + sequence))).Outcomes.Single())
            .ToList();

        Assert.Equal(
            [CommitOutcome.Duplicate, CommitOutcome.Duplicate, CommitOutcome.Duplicate, CommitOutcome.Stored, CommitOutcome.Duplicate, CommitOutcome.Duplicate, CommitOutcome.Stored],
            outcomes);
        var stored = await StoredValues("patient-1");
        Assert.Equal([61.0, 62.0, 63.0, 64.0, 65.0, 66.0, 67.0], stored);
    }

    [Fact]
    public async Task A_committed_sequence_is_still_a_duplicate_after_reopening_the_file()
    {
        Store.Commit(Of("watch-1", "patient-1", 5, new VitalReading(VitalKind.HeartRate, T0, 70)));
        _file.Reopen();

        var resent = Store.Commit(Of("watch-1", "patient-1", 5, new VitalReading(VitalKind.HeartRate, T0, 70)));
        var next = Store.Commit(Of("watch-1", "patient-1", 6, new VitalReading(VitalKind.HeartRate, T0 + 1_000, 71)));

        Assert.Equal([CommitOutcome.Duplicate], resent.Outcomes);
        Assert.Equal([CommitOutcome.Stored], next.Outcomes);
        var stored = await StoredValues("patient-1");
        Assert.Equal([70.0, 71.0], stored);
    }

    [Fact]
    public async Task A_batch_that_stores_no_reading_is_still_known_by_its_number_after_reopening_the_file()
    {
        // A batch's number is written on the readings it stores; batch 6 stores none (its one reading repeats batch
        // 5's), so its number must be kept another way.
        Store.Commit(Of("watch-1", "patient-1", 5, new VitalReading(VitalKind.HeartRate, T0, 70)));
        var repeats = Store.Commit(Of("watch-1", "patient-1", 6, new VitalReading(VitalKind.HeartRate, T0, 70)));
        _file.Reopen();

        var resent = Store.Commit(Of("watch-1", "patient-1", 6, new VitalReading(VitalKind.HeartRate, T0, 70)));

        Assert.Equal((0, 1), (repeats.Batches[0].Stored.Length, repeats.Batches[0].Duplicates));
        Assert.Equal([CommitOutcome.Duplicate], resent.Outcomes);
        Assert.Equal(1, await StoredCount("patient-1"));
    }

    [Fact]
    public async Task Numbers_on_readings_committed_after_the_last_fold_are_known_after_reopening_twice()
    {
        Store.Commit(Of("watch-1", "patient-1", 1, new VitalReading(VitalKind.HeartRate, T0, 70)));
        _file.Reopen();
        Store.Commit(Of("watch-1", "patient-1", 2, new VitalReading(VitalKind.HeartRate, T0 + 1_000, 71)));
        _file.Reopen();
        Store.Commit(Of("watch-1", "patient-1", 3, new VitalReading(VitalKind.HeartRate, T0 + 2_000, 72)));
        _file.Reopen();

        var outcomes = new ulong[] { 1, 2, 3 }
            .Select(sequence => Store.Commit(Of("watch-1", "patient-1", sequence, new VitalReading(VitalKind.HeartRate, T0 + ((long)sequence - 1) * 1_000, 69 + sequence))).Outcomes.Single())
            .ToList();

        Assert.Equal([CommitOutcome.Duplicate, CommitOutcome.Duplicate, CommitOutcome.Duplicate], outcomes);
        var stored = await StoredValues("patient-1");
        Assert.Equal([70.0, 71.0, 72.0], stored);
    }

    [Fact]
    public async Task A_reused_sequence_number_with_new_readings_stores_them_and_repeats_nothing()
    {
        // A reinstalled app starts its numbering over: its new readings must not be lost as "already committed".
        Store.Commit(Of("watch-1", "patient-1", 3, new VitalReading(VitalKind.HeartRate, T0, 70)));

        var reused = Store.Commit(
            Of("watch-1", "patient-1", 3, new VitalReading(VitalKind.HeartRate, T0 + 60_000, 99)),
            Of("watch-1", "patient-1", 3, new VitalReading(VitalKind.HeartRate, T0 + 60_000, 99)));

        // The second copy brings nothing new under a known number: that is a resend.
        Assert.Equal([CommitOutcome.Stored, CommitOutcome.Duplicate], reused.Outcomes);
        Assert.Equal((1, 0), (reused.Batches[0].Stored.Length, reused.Batches[0].Duplicates));
        Assert.Equal((0, 1), (reused.Batches[1].Stored.Length, reused.Batches[1].Duplicates));
        var stored = await StoredValues("patient-1");
        Assert.Equal([70.0, 99.0], stored);
    }

    [Fact]
    public async Task Devices_have_independent_sequences()
    {
        var (_, outcomes, _) = Store.Commit(
            Of("watch-1", "patient-1", 3, new VitalReading(VitalKind.HeartRate, T0, 70)),
            Of("ring-1", "patient-1", 3, new VitalReading(VitalKind.HeartRate, T0 + 1_000, 71)));

        Assert.Equal([CommitOutcome.Stored, CommitOutcome.Stored], outcomes);
        var stored = await StoredValues("patient-1");
        Assert.Equal([70.0, 71.0], stored);
    }

    [Fact]
    public async Task A_batch_without_a_sequence_is_stored_once_by_its_readings()
    {
        var batch = Of("watch-1", "patient-1", 0, new VitalReading(VitalKind.HeartRate, T0, 70));

        var first = Store.Commit(batch);
        var again = Store.Commit(batch);
        _file.Reopen();
        var afterReopen = Store.Commit(batch);

        Assert.Equal(1, first.Batches[0].Stored.Length);
        Assert.Equal([CommitOutcome.Stored], again.Outcomes);
        Assert.Equal((0, 1), (again.Batches[0].Stored.Length, again.Batches[0].Duplicates));
        Assert.Equal((0, 1), (afterReopen.Batches[0].Stored.Length, afterReopen.Batches[0].Duplicates));
        Assert.Equal(1, await StoredCount("patient-1"));
    }


    private async Task<long> StoredCount(string patientId)
    {
        var aggregate = await Store.AggregateAsync(patientId, T0 - 86_400_000, T0 + 86_400_000, Resolution.Day);
        return aggregate.Windows.Sum(window => window.Window.Count);
    }

    private async Task<double[]> StoredValues(string patientId)
    {
        var readings = await Store.ReadAsync(patientId, VitalKind.HeartRate, T0 - 86_400_000, T0 + 86_400_000, limit: 1_000);
        return [.. readings.Select(reading => reading.Value)];
    }
}
