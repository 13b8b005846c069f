using Microsoft.Extensions.Time.Testing;
using Telemetry.Core.Grains;
using Telemetry.Core.Readings;
using Telemetry.Core.Storage;
using Telemetry.Core.Vitals;
using Telemetry.Storage.DuckDb;
using Telemetry.Storage.Influx;
using Telemetry.Testing;
using Xunit;
using static Telemetry.Storage.Tests.DuckDb.Batches;

namespace Telemetry.Storage.Tests.Influx;

/// <summary>The write path through InfluxDB.Client into a real line-protocol server (VictoriaMetrics), read back from it.</summary>
public sealed class InfluxWriteTests : IAsyncLifetime
{
    private VictoriaMetrics _server = null!;
    private InfluxStoreFile _file = null!;

    public async Task InitializeAsync()
    {
        _server = await VictoriaMetrics.StartNewAsync();
        _file = InfluxStoreFile.ForVictoriaMetrics(_server.Url);
    }

    public async Task DisposeAsync()
    {
        _file.Dispose();
        await _server.DisposeAsync();
    }

    [Fact]
    public async Task Every_reading_is_written_as_a_point_tagged_with_patient_device_and_vital()
    {
        var (commitId, outcomes) = await _file.CommitAsync(
            Of("watch-1", "patient-1", 1, Heart(0, 61), Heart(1_000, 62.5), new VitalReading(VitalKind.OxygenSaturation, T0, 97)),
            Of("ring-2", "patient-2", 1, Heart(0, 55)));

        Assert.All(outcomes, outcome => Assert.Equal(CommitOutcome.Stored, outcome.Outcome));
        var values = await _server.ExportAsync("vitals_value");
        Assert.Equal(
            [("patient-1", "watch-1", "heart_rate", T0, 61.0), ("patient-1", "watch-1", "heart_rate", T0 + 1_000, 62.5),
             ("patient-1", "watch-1", "spo2", T0, 97.0), ("patient-2", "ring-2", "heart_rate", T0, 55.0)],
            values.Select(Row).Order());
        var commits = await _server.ExportAsync("vitals_commit");
        Assert.Equal(4, commits.Count);
        Assert.All(commits, sample => Assert.Equal(commitId, (long)sample.Value));
    }

    [Fact]
    public async Task A_resent_batch_is_a_duplicate_and_a_resend_after_a_restart_is_stored_once()
    {
        var batch = Of("watch-1", "patient-1", 7, Heart(0, 61), Heart(1_000, 62));
        await _file.CommitAsync(batch);

        var (_, again) = await _file.CommitAsync(batch);
        Assert.Equal(CommitOutcome.Duplicate, again[0].Outcome);
        Assert.Equal(2, again[0].Duplicates);

        // The batch ledger is in the local file, so a restarted store still knows the batch.
        _file.Reopen();
        var (_, afterRestart) = await _file.CommitAsync(batch);
        Assert.Equal(CommitOutcome.Duplicate, afterRestart[0].Outcome);

        // A batch with no number is recognised reading by reading, looked up in the server after the restart (once the
        // server shows what it was sent to the store's own lookup: a busy VictoriaMetrics can take a moment after its
        // flush, and a lookup over a few seconds reads its per-day index, which can show a new series later than the
        // export of everything does).
        await LookupShowsAsync(readings: 2);

        var (_, unnumbered) = await _file.CommitAsync(Of("watch-1", "patient-1", 0, Heart(0, 61), Heart(1_000, 62), Heart(2_000, 63)));
        Assert.Equal(2, unnumbered[0].Duplicates);
        Assert.Equal([Heart(2_000, 63)], unnumbered[0].Stored.ToArray());
        Assert.Equal(3, (await _server.ExportAsync("vitals_value")).Count);
    }

    [Fact]
    public async Task A_batch_number_used_again_after_a_restart_stores_its_new_readings_once_its_writes_would_show()
    {
        // The server shows writes within a second here: a store opened longer ago than that, finding none of a batch's
        // readings, knows its number was used again (an app reinstalled, counting from 1), not sent before unseen.
        using var file = InfluxStoreFile.ForVictoriaMetrics(_server.Url, options => options.ReadableAfter = TimeSpan.FromSeconds(1));
        await file.CommitAsync(Of("watch-9", "patient-9", 7, Heart(0, 61)), Of("watch-9", "patient-9", 8, Heart(1_000, 62)));
        file.Reopen();
        _ = file.Store;
        await Task.Delay(TimeSpan.FromSeconds(1.2));

        // Number 7 again, then at once number 8 with a vital the store has not seen since its start (looked up): both
        // new, though 8 comes within a second of 7's write.
        var spo2 = new VitalReading(VitalKind.OxygenSaturation, T0 + 61_000, 96);
        var (_, reused) = await file.CommitAsync(Of("watch-9", "patient-9", 7, Heart(60_000, 70)));
        var (_, next) = await file.CommitAsync(Of("watch-9", "patient-9", 8, spo2));

        Assert.Equal((CommitOutcome.Stored, CommitOutcome.Stored), (reused[0].Outcome, next[0].Outcome));
        Assert.Equal([Heart(60_000, 70)], reused[0].Stored.ToArray());
        Assert.Equal([spo2], next[0].Stored.ToArray());

        // Number 7 sent again at once (its ack lost): its write may not show yet, so it is a duplicate.
        var (_, again) = await file.CommitAsync(Of("watch-9", "patient-9", 7, Heart(60_000, 70)));
        Assert.Equal(CommitOutcome.Duplicate, again[0].Outcome);
    }

    [Fact]
    public async Task Readings_sent_again_are_recognised_whether_in_order_late_or_twice_in_one_flush()
    {
        await _file.CommitAsync(Of("watch-1", "patient-1", 0, Heart(0, 60), Heart(10_000, 70)));

        // (VictoriaMetrics makes writes searchable within about a second; a device resends later than that.)
        await _server.FlushAsync();

        // Known to this server: the late reading is looked up, the one after its latest is new without a lookup.
        var (_, late) = await _file.CommitAsync(Of("watch-1", "patient-1", 0, Heart(5_000, 65), Heart(10_000, 70), Heart(20_000, 80)));
        Assert.Equal([Heart(5_000, 65), Heart(20_000, 80)], late[0].Stored.ToArray());
        Assert.Equal(1, late[0].Duplicates);

        // The same reading in two batches of one flush is stored once; the other device's is its own.
        var (_, twice) = await _file.CommitAsync(
            Of("watch-1", "patient-1", 0, Heart(30_000, 90)),
            Of("watch-1", "patient-1", 0, Heart(30_000, 90)),
            Of("ring-2", "patient-1", 0, Heart(30_000, 90)));
        Assert.Equal([1, 0, 1], twice.Select(outcome => outcome.Stored.Length));
        Assert.Equal(1, twice[1].Duplicates);
        Assert.Equal(6, (await _server.ExportAsync("vitals_value")).Count);
    }

    [Fact]
    public async Task Another_value_for_a_time_already_written_is_a_conflict_and_the_first_value_stands()
    {
        await _file.CommitAsync(Of("watch-1", "patient-1", 0, Heart(0, 60)));

        // At once (the server may not show it yet: this server's memory of what it wrote lately tells), in one flush with
        // another uploader's value, and after a restart (the server's lookup tells).
        var (_, soon) = await _file.CommitAsync(Of("watch-1", "patient-1", 0, Heart(0, 65), Heart(1_000, 61)), Of("watch-1", "patient-1", 0, Heart(1_000, 67)));
        Assert.Equal((1, 0, 1), (soon[0].Stored.Length, soon[0].Duplicates, soon[0].Conflicts));
        Assert.Equal((0, 0, 1), (soon[1].Stored.Length, soon[1].Duplicates, soon[1].Conflicts));
        _file.Reopen();
        await LookupShowsAsync(readings: 2);
        var (_, later) = await _file.CommitAsync(Of("watch-1", "patient-1", 0, Heart(0, 66), Heart(1_000, 61)));
        Assert.Equal((0, 1, 1), (later[0].Stored.Length, later[0].Duplicates, later[0].Conflicts));

        Assert.Equal([60.0, 61.0], (await _server.ExportAsync("vitals_value")).OrderBy(sample => sample.TimestampMs).Select(sample => sample.Value));
    }

    [Fact]
    public async Task Numbered_batches_are_checked_reading_by_reading_at_once_after_their_write()
    {
        await _file.CommitAsync(Of("watch-1", "patient-1", 1, Heart(0, 60), Heart(1_000, 61)));

        // At once (within ReadableAfter): another number with a changed value; the same number with a changed value; the
        // same number as sent. The server is asked to show its writes, so none is taken for new.
        var (_, renumbered) = await _file.CommitAsync(Of("watch-1", "patient-1", 2, Heart(0, 65)));
        var (_, changed) = await _file.CommitAsync(Of("watch-1", "patient-1", 1, Heart(0, 60), Heart(1_000, 66)));
        var (_, same) = await _file.CommitAsync(Of("watch-1", "patient-1", 1, Heart(0, 60), Heart(1_000, 61)));

        Assert.Equal((CommitOutcome.Stored, 0, 1), (renumbered[0].Outcome, renumbered[0].Stored.Length, renumbered[0].Conflicts));
        Assert.Equal((CommitOutcome.Stored, 0, 1, 1), (changed[0].Outcome, changed[0].Stored.Length, changed[0].Duplicates, changed[0].Conflicts));
        Assert.Equal(CommitOutcome.Duplicate, same[0].Outcome);
        Assert.Equal([60.0, 61.0], (await _server.ExportAsync("vitals_value")).OrderBy(sample => sample.TimestampMs).Select(sample => sample.Value));
    }

    [Fact]
    public async Task A_device_bound_to_another_patient_sending_again_what_it_sent_for_the_first_stores_it_once()
    {
        await _file.CommitAsync(Of("watch-1", "patient-1", 0, Heart(0, 60), Heart(1_000, 61)));
        _file.Reopen();
        await LookupShowsAsync(readings: 2);

        // The watch handed to patient-2; its app, after the rebind, uploads its backlog again, the old readings with it.
        var (_, again) = await _file.CommitAsync(Of("watch-1", "patient-2", 0, Heart(0, 60), Heart(1_000, 64), Heart(2_000, 70)));

        Assert.Equal((1, 1, 1), (again[0].Stored.Length, again[0].Duplicates, again[0].Conflicts));
        await _server.FlushAsync();
        Assert.Equal(
            [("patient-1", "watch-1", "heart_rate", T0, 60.0), ("patient-1", "watch-1", "heart_rate", T0 + 1_000, 61.0), ("patient-2", "watch-1", "heart_rate", T0 + 2_000, 70.0)],
            (await _server.ExportAsync("vitals_value")).Select(Row).Order());
    }

    /// <summary>Waits until the store's own lookup shows watch-1's first heart rates, as a restarted store asks for them.</summary>
    private async Task LookupShowsAsync(int readings)
    {
        var visible = System.Diagnostics.Stopwatch.StartNew();
        await _server.FlushAsync();
        while ((await _file.Backend.Reader.ExistingAsync(InfluxLayout.Vitals, "watch-1", [VitalKind.HeartRate], T0, T0 + 2_001, default)).Count < readings)
        {
            Assert.True(visible.Elapsed < TimeSpan.FromSeconds(30), "the server never showed the readings written");
            await Task.Delay(50);
        }
    }

    [Fact]
    public async Task Commit_ids_increase_across_restarts()
    {
        var (first, _) = await _file.CommitAsync(Of("watch-1", "patient-1", 1, Heart(0, 61)));
        var (second, _) = await _file.CommitAsync(Of("watch-1", "patient-1", 2, Heart(1, 61)));
        _file.Reopen();
        var (third, _) = await _file.CommitAsync(Of("watch-1", "patient-1", 3, Heart(2, 61)));

        Assert.True(first < second && second < third, $"{first} < {second} < {third}");
    }

    [Fact]
    public async Task Quarantined_readings_go_to_their_own_measurement_with_the_reason()
    {
        await _file.CommitAsync(Of("watch-1", "patient-1", 1, Heart(0, 61)) with { Quarantined = new[] { Heart(1_000, 400) } });

        var quarantined = Assert.Single(await _server.ExportAsync("quarantine_value"));
        Assert.Equal(("patient-1", "watch-1", "heart_rate", T0 + 1_000, 400.0), Row(quarantined));
        Assert.Single(await _server.ExportAsync("vitals_value"));
    }

    [Fact]
    public async Task A_quarantined_reading_sent_again_at_once_under_another_number_is_known_after_a_restart()
    {
        await _file.CommitAsync(Of("watch-1", "patient-1", 1, Heart(0, 61)) with { Quarantined = new[] { Heart(1_000, 400) } });

        // Restarted at once (nothing of the write remembered), the app sends it again numbered anew: the server is asked
        // to show its writes before the lookup, so the reading is neither kept nor handed to the grain to judge again.
        _file.Reopen();
        var (_, again) = await _file.CommitAsync(Of("watch-1", "patient-1", 2) with { Quarantined = new[] { Heart(1_000, 400) } });

        Assert.True(again[0].Quarantined.IsEmpty);
        Assert.Single(await _server.ExportAsync("quarantine_value"));
    }

    [Fact]
    public async Task A_flush_larger_than_one_request_is_written_in_several_and_all_arrive()
    {
        var readings = Enumerable.Range(0, (Telemetry.Storage.Influx.InfluxRawSeriesStore.MaxLinesPerWrite * 2) + 17).Select(i => Heart(i, 60 + (i % 40))).ToArray();
        await _file.CommitAsync(Of("watch-1", "patient-1", 1, readings));

        Assert.Equal(readings.Length, (await _server.ExportAsync("vitals_value")).Count);
    }

    [Fact]
    public async Task Each_commit_records_the_minutes_it_stored_readings_in_until_the_mark_passes_it()
    {
        var (first, _) = await _file.CommitAsync(Of("watch-1", "patient-1", 1, Heart(0, 61), Heart(1_000, 62), Heart(61_000, 63)));
        var (second, outcomes) = await _file.CommitAsync(Of("ring-2", "patient-2", 1, Heart(0, 55)), Of("watch-1", "patient-1", 1, Heart(0, 61)));
        Assert.Equal(CommitOutcome.Duplicate, outcomes[1].Outcome);

        // A resent batch stored nothing, so it records no minute.
        var log = DuckDbCommitLog.ForLedger(_file.Database, TimeSpan.Zero, TimeProvider.System);
        Assert.Equal(new CommitLogPosition(second, second), await log.ReadPositionAsync());
        Assert.Equal(
            [
                new PatientMinute("patient-1", new CommittedMinute(VitalKind.HeartRate, T0, first, first)),
                new PatientMinute("patient-1", new CommittedMinute(VitalKind.HeartRate, T0 + 60_000, first, first)),
                new PatientMinute("patient-2", new CommittedMinute(VitalKind.HeartRate, T0, second, second)),
            ],
            await MinutesAsync(log, 0, second));

        // What the mark has passed is gone, and stays gone after a restart.
        await log.SaveAppliedThroughAsync(first);
        _file.Reopen();
        log = DuckDbCommitLog.ForLedger(_file.Database, TimeSpan.Zero, TimeProvider.System);
        Assert.Equal(new CommitLogPosition(first, second), await log.ReadPositionAsync());
        Assert.Equal([new PatientMinute("patient-2", new CommittedMinute(VitalKind.HeartRate, T0, second, second))], await MinutesAsync(log, 0, second));
    }

    [Fact]
    public async Task Commits_applied_lately_stay_in_the_log_past_the_mark_until_the_server_shows_them_whole()
    {
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var (first, _) = await _file.CommitAsync(Of("watch-1", "patient-1", 1, Heart(0, 61), Heart(61_000, 63)));
        var (second, _) = await _file.CommitAsync(Of("ring-2", "patient-2", 1, Heart(0, 55)));
        var log = DuckDbCommitLog.ForLedger(_file.Database, TimeSpan.FromSeconds(15), clock);

        // Applied a moment ago: a start now would settle both (a grain activating may not see them yet), so the mark
        // passing them forgets neither.
        await log.SaveAppliedThroughAsync(second);
        var position = await log.ReadPositionAsync();
        Assert.Equal((second, second), (position.AppliedThrough, position.LastCommitId));
        Assert.True(position.ShownThrough < first);
        Assert.Equal(
            [
                new PatientMinute("patient-1", new CommittedMinute(VitalKind.HeartRate, T0, first, first)),
                new PatientMinute("patient-1", new CommittedMinute(VitalKind.HeartRate, T0 + 60_000, first, first)),
                new PatientMinute("patient-2", new CommittedMinute(VitalKind.HeartRate, T0, second, second)),
            ],
            await MinutesAsync(log, position.ShownThrough, second));

        // Once the server shows them whole, there is nothing to settle, and the next save forgets them.
        clock.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal(new CommitLogPosition(second, second, second), await log.ReadPositionAsync());
        await log.SaveAppliedThroughAsync(second);
        Assert.Empty(await MinutesAsync(log, 0, second));
    }

    private static async Task<List<PatientMinute>> MinutesAsync(ICommitLog log, long after, long through)
    {
        var minutes = new List<PatientMinute>();
        await foreach (var minute in log.MinutesCommittedAsync(after, through))
        {
            minutes.Add(minute);
        }

        return minutes;
    }

    private static VitalReading Heart(long offsetMs, double value) => new(VitalKind.HeartRate, T0 + offsetMs, value);

    private static (string Patient, string Device, string Kind, long TimestampMs, double Value) Row(VictoriaMetrics.Sample sample) =>
        (sample.Labels["patient"], sample.Labels["device"], sample.Labels["kind"], sample.TimestampMs, sample.Value);
}
