using Telemetry.Core.Grains;
using Telemetry.Core.Readings;
using Telemetry.Core.Storage;
using Telemetry.Core.Vitals;
using Telemetry.Storage.DuckDb;
using static Telemetry.Storage.Tests.DuckDb.Batches;

namespace Telemetry.Storage.Tests.DuckDb;

public sealed class DuckDbCommitLogTests : IDisposable
{
    private readonly RawStoreFile _file = new();

    private DuckDbCommitLog Log => DuckDbCommitLog.ForReadings(_file.Database, _file.Store);

    public void Dispose() => _file.Dispose();

    [Fact]
    public async Task A_file_without_a_mark_takes_its_last_commit_as_applied()
    {
        _file.Store.Commit(Of("watch-1", "patient-1", 1, new VitalReading(VitalKind.HeartRate, T0, 70)));
        var (last, _, _) = _file.Store.Commit(Of("watch-1", "patient-1", 2, new VitalReading(VitalKind.HeartRate, T0 + 1_000, 71)));

        Assert.Equal(new CommitLogPosition(last, last), await Log.ReadPositionAsync());

        // Taken as the mark from then on, so commits after it are to be repaired after a restart.
        _file.Store.Commit(Of("watch-1", "patient-1", 3, new VitalReading(VitalKind.HeartRate, T0 + 2_000, 72)));
        _file.Reopen();
        Assert.Equal(new CommitLogPosition(last, last + 1), await Log.ReadPositionAsync());
    }

    [Fact]
    public async Task The_mark_saved_is_read_back_after_a_restart()
    {
        var (first, _, _) = _file.Store.Commit(Of("watch-1", "patient-1", 1, new VitalReading(VitalKind.HeartRate, T0, 70)));
        _file.Store.Commit(Of("watch-1", "patient-1", 2, new VitalReading(VitalKind.HeartRate, T0 + 1_000, 71)));
        var (last, _, _) = _file.Store.Commit(Of("watch-1", "patient-1", 3, new VitalReading(VitalKind.HeartRate, T0 + 2_000, 72)));

        await Log.SaveAppliedThroughAsync(first);
        _file.Reopen();

        Assert.Equal(new CommitLogPosition(first, last), await Log.ReadPositionAsync());
    }

    [Fact]
    public async Task A_mark_past_the_last_commit_comes_back_to_it_as_ids_are_handed_out_again()
    {
        var (last, _, _) = _file.Store.Commit(Of("watch-1", "patient-1", 1, new VitalReading(VitalKind.HeartRate, T0, 70)));

        // Commits after it stored nothing (resent batches): a restart hands their ids out again.
        await Log.SaveAppliedThroughAsync(last + 3);
        _file.Reopen();
        Assert.Equal(new CommitLogPosition(last, last), await Log.ReadPositionAsync());

        var (next, _, _) = _file.Store.Commit(Of("watch-1", "patient-1", 2, new VitalReading(VitalKind.HeartRate, T0 + 1_000, 71)));
        _file.Reopen();
        Assert.Equal(last + 1, next);
        Assert.Equal(new CommitLogPosition(last, next), await Log.ReadPositionAsync());
    }

    [Fact]
    public async Task A_stop_that_was_not_clean_is_known_at_the_next_start_until_what_it_left_open_is_recovered()
    {
        _file.Store.Commit(Of("watch-1", "patient-1", 1, new VitalReading(VitalKind.HeartRate, T0, 70)));
        Assert.False(_file.Database.StoppedUncleanly);
        Assert.Empty(await Log.MinutesOpenAtStopAsync());

        // A clean stop and start: nothing to recover.
        _file.Reopen();
        Assert.False(_file.Database.StoppedUncleanly);

        // Killed: the marker of a server with the file open stays behind, and the next start finds it.
        var marker = Path.Combine(_file.Directory.Path, "telemetry.running");
        Assert.True(File.Exists(marker));
        var left = File.ReadAllBytes(marker);
        _file.Reopen(between: () => File.WriteAllBytes(marker, left));
        Assert.True(_file.Database.StoppedUncleanly);
        Assert.Equal([new PatientMinute("patient-1", new CommittedMinute(VitalKind.HeartRate, T0, 0, 0))], await Log.MinutesOpenAtStopAsync());

        // Stopped again before the recovery ended: the start after still recovers; once recovered, a clean stop is clean.
        _file.Reopen();
        Assert.True(_file.Database.StoppedUncleanly);
        Log.OpenWindowsRecovered();
        _file.Reopen();
        Assert.False(_file.Database.StoppedUncleanly);

        // A stop that left grains' windows unwritten (its shutdown cut short) is taken as unclean.
        Log.OpenWindowsLeft();
        _file.Reopen();
        Assert.True(_file.Database.StoppedUncleanly);
    }

    [Fact]
    public async Task A_recovery_not_done_looks_again_at_the_days_of_the_stop_not_at_those_of_the_readings_since()
    {
        const long Day = 86_400_000;
        _file.Store.Commit(Of("watch-1", "patient-1", 1, new VitalReading(VitalKind.HeartRate, T0, 70)));
        var marker = Path.Combine(_file.Directory.Path, "telemetry.running");
        var left = File.ReadAllBytes(marker);

        // The start that finds the stop notes when it did, and the starts after it read that back until it is recovered.
        _file.Reopen(between: () => File.WriteAllBytes(marker, left));
        var found = _file.Database.RecoverAsOf;
        Assert.NotNull(found);
        _file.Reopen();
        Assert.Equal(found, _file.Database.RecoverAsOf);

        // Found an hour after the reading; the server took readings for two more days before a start whose recovery
        // had not finished: it still looks at the stop's day.
        var foundAt = DateTimeOffset.FromUnixTimeMilliseconds(T0 + 3_600_000);
        _file.Reopen(between: () => File.WriteAllText(marker, $"opened {foundAt:O} by process 1\nrecover as of {foundAt:O}\n"));
        _file.Store.Commit(Of("watch-1", "patient-1", 2, new VitalReading(VitalKind.HeartRate, T0 + (2 * Day), 71)));
        _file.Reopen();

        Assert.Equal(foundAt, _file.Database.RecoverAsOf);
        Assert.Equal(
            [
                new PatientMinute("patient-1", new CommittedMinute(VitalKind.HeartRate, T0, 0, 0)),
                new PatientMinute("patient-1", new CommittedMinute(VitalKind.HeartRate, T0 + (2 * Day), 0, 0)),
            ],
            await Log.MinutesOpenAtStopAsync());

        // Recovered: the next clean stop leaves no marker, and the start after has nothing to recover.
        Log.OpenWindowsRecovered();
        _file.Reopen();
        Assert.Null(_file.Database.RecoverAsOf);
        Assert.Empty(await Log.MinutesOpenAtStopAsync());

        // Recovered, then killed again: the next start looks at the days as of itself, not as of the start before.
        Log.OpenWindowsRecovered();
        left = File.ReadAllBytes(marker);
        _file.Reopen(between: () => File.WriteAllBytes(marker, left));
        Assert.NotEqual(foundAt, _file.Database.RecoverAsOf);
        Assert.Equal([new PatientMinute("patient-1", new CommittedMinute(VitalKind.HeartRate, T0 + (2 * Day), 0, 0))], await Log.MinutesOpenAtStopAsync());
    }

    [Fact]
    public async Task Readings_committed_as_the_server_comes_back_days_after_a_stop_do_not_hide_the_stops_day()
    {
        const long Day = 86_400_000;
        _file.Store.Commit(Of("watch-1", "patient-1", 1, new VitalReading(VitalKind.HeartRate, T0, 70)));
        var marker = Path.Combine(_file.Directory.Path, "telemetry.running");
        var left = File.ReadAllBytes(marker);

        // Killed; three days later the server comes back and a device's reading of today is committed before the
        // recovery reads what the stop left open.
        _file.Reopen(between: () => File.WriteAllBytes(marker, left));
        _file.Store.Commit(Of("watch-2", "patient-2", 1, new VitalReading(VitalKind.HeartRate, T0 + (3 * Day), 80)));

        Assert.Equal([new PatientMinute("patient-1", new CommittedMinute(VitalKind.HeartRate, T0, 0, 0))], await Log.MinutesOpenAtStopAsync());

        // A start after one whose recovery did not finish reads the same bound back from the marker.
        _file.Reopen();
        Assert.Contains(new PatientMinute("patient-1", new CommittedMinute(VitalKind.HeartRate, T0, 0, 0)), await Log.MinutesOpenAtStopAsync());
    }

    [Fact]
    public async Task The_minutes_open_at_a_stop_are_each_vitals_last_on_the_newest_readings_day_and_the_day_before()
    {
        const long Day = 86_400_000;
        _file.Store.Commit(
            Of("watch-1", "patient-1", 1,
                new VitalReading(VitalKind.HeartRate, T0 - (2 * Day), 60),
                new VitalReading(VitalKind.HeartRate, T0 - Day + 1_000, 61),
                new VitalReading(VitalKind.HeartRate, T0 - Day + 125_000, 62),
                new VitalReading(VitalKind.HeartRate, T0 + 5_000, 63),
                new VitalReading(VitalKind.OxygenSaturation, T0 + 185_000, 97)),
            Of("watch-2", "patient-2", 1, new VitalReading(VitalKind.HeartRate, T0 - Day + 3_000, 70)));

        var minutes = await Log.LastMinutesOfLastDaysAsync();

        // Not the day before those two (a grain's windows of it were written when it ended, or as the grain went idle).
        Assert.Equal(
            [
                new PatientMinute("patient-1", new CommittedMinute(VitalKind.HeartRate, T0 - Day + 120_000, 0, 0)),
                new PatientMinute("patient-1", new CommittedMinute(VitalKind.HeartRate, T0, 0, 0)),
                new PatientMinute("patient-1", new CommittedMinute(VitalKind.OxygenSaturation, T0 + 180_000, 0, 0)),
                new PatientMinute("patient-2", new CommittedMinute(VitalKind.HeartRate, T0 - Day, 0, 0)),
            ],
            minutes);
    }

    [Fact]
    public async Task Minutes_committed_are_listed_per_patient_and_vital_for_the_commits_asked()
    {
        var (before, _, _) = _file.Store.Commit(Of("watch-1", "patient-1", 1, new VitalReading(VitalKind.HeartRate, T0 + 1_000, 70)));
        var (backfill, _, _) = _file.Store.Commit(
            Of("watch-2", "patient-2", 1, new VitalReading(VitalKind.OxygenSaturation, T0 - 86_400_000, 95), new VitalReading(VitalKind.OxygenSaturation, T0 - 86_400_000 + 59_000, 96)),
            Of("watch-1", "patient-1", 2, new VitalReading(VitalKind.HeartRate, T0 + 2_000, 71), new VitalReading(VitalKind.HeartRate, T0 + 61_000, 72), new VitalReading(VitalKind.Steps, T0 + 5_000, 10)));
        var (later, _, _) = _file.Store.Commit(Of("watch-1", "patient-1", 3, new VitalReading(VitalKind.HeartRate, T0 + 62_000, 73)));

        var minutes = new List<PatientMinute>();
        await foreach (var minute in Log.MinutesCommittedAsync(before, later))
        {
            minutes.Add(minute);
        }

        Assert.Equal(
            [
                new PatientMinute("patient-1", new CommittedMinute(VitalKind.HeartRate, T0, backfill, backfill)),
                new PatientMinute("patient-1", new CommittedMinute(VitalKind.HeartRate, T0 + 60_000, backfill, later)),
                new PatientMinute("patient-1", new CommittedMinute(VitalKind.Steps, T0, backfill, backfill)),
                new PatientMinute("patient-2", new CommittedMinute(VitalKind.OxygenSaturation, T0 - 86_400_000, backfill, backfill)),
            ],
            minutes);
    }

    [Fact]
    public async Task A_backfill_of_many_minutes_is_listed_whole()
    {
        // More minutes than one page the log reads at a time: a week of one reading a minute, uploaded at once.
        const int Minutes = 7 * 1_440;
        var (commitId, _, _) = _file.Store.Commit(Of("watch-1", "patient-1", 1, [.. Enumerable.Range(0, Minutes).Select(i => new VitalReading(VitalKind.HeartRate, T0 - (i * 60_000L), 60 + (i % 40)))]));

        var listed = new List<long>();
        await foreach (var (_, minute) in Log.MinutesCommittedAsync(commitId - 1, commitId))
        {
            listed.Add(minute.MinuteStartMs);
        }

        Assert.Equal(Enumerable.Range(0, Minutes).Select(i => T0 - (i * 60_000L)).Order(), listed);
    }
}
