using Telemetry.Core.Readings;
using Telemetry.Core.Rollups;
using Telemetry.Core.Storage;
using Telemetry.Core.Vitals;
using Telemetry.Storage.DuckDb;
using static Telemetry.Storage.Tests.DuckDb.Batches;
using static Telemetry.Storage.Tests.DuckDb.Sql;

namespace Telemetry.Storage.Tests.DuckDb;

public sealed class DuckDbRawSeriesStoreTests : IDisposable
{
    private readonly RawStoreFile _file = new();

    private DuckDbRawSeriesStore Store => _file.Store;

    public void Dispose() => _file.Dispose();

    [Fact]
    public void The_database_file_is_created_at_the_configured_path()
    {
        Assert.Equal(Path.Combine(_file.Directory.Path, "telemetry.duckdb"), _file.Database.FilePath);
        Assert.True(File.Exists(_file.Database.FilePath));
    }

    [Fact]
    public async Task Retention_deletes_in_many_small_transactions_exactly_what_lies_before_its_cutoff()
    {
        // A thousand readings twenty minutes apart (about two weeks); the cutoff falls between two of them.
        const long Step = 1_200_000;
        Store.Commit(Of("watch-1", "patient-1", 1, [.. Enumerable.Range(0, 1_000).Select(i => new VitalReading(VitalKind.HeartRate, T0 + (i * Step), 60 + (i % 40)))]));
        var cutoff = T0 + (600 * Step) - 1;

        var deleted = await Store.DeleteBeforeAsync(cutoff, chunkRows: 37, CancellationToken.None);

        Assert.Equal(600, deleted);
        var left = await Store.ReadAsync("patient-1", VitalKind.HeartRate, T0, T0 + (1_000 * Step), 2_000);
        Assert.Equal(400, left.Count);
        Assert.Equal(T0 + (600 * Step), left[0].TimestampMs);
    }

    [Fact]
    public async Task Committed_readings_aggregate_into_minute_windows_per_kind()
    {
        var (commitId, outcomes, _) = Store.Commit(
            Of("watch-1", "patient-1", 1,
                new(VitalKind.HeartRate, T0 + 5_000, 70),
                new(VitalKind.OxygenSaturation, T0 + 10_000, 97),
                new(VitalKind.HeartRate, T0 + 50_000, 75),
                new(VitalKind.HeartRate, T0 + 20_000, 80),
                new(VitalKind.OxygenSaturation, T0 + 30_000, 95),
                new(VitalKind.HeartRate, T0 + 65_000, 90)),
            Of("watch-2", "patient-2", 1, new VitalReading(VitalKind.HeartRate, T0 + 5_000, 140)));

        var aggregate = await Store.AggregateAsync("patient-1", T0, T0 + 120_000, Resolution.Minute);

        Assert.Equal([CommitOutcome.Stored, CommitOutcome.Stored], outcomes);
        Assert.Equal(commitId, aggregate.HighestCommitId);
        Assert.Equal(
            [
                new KindWindow(VitalKind.HeartRate, new RollupWindow(T0, 3, 225, 70, 80, (70 * 70) + (80 * 80) + (75 * 75), 75, T0 + 50_000)),
                new KindWindow(VitalKind.HeartRate, new RollupWindow(T0 + 60_000, 1, 90, 90, 90, 90 * 90, 90, T0 + 65_000)),
                new KindWindow(VitalKind.OxygenSaturation, new RollupWindow(T0, 2, 192, 95, 97, (97 * 97) + (95 * 95), 95, T0 + 30_000)),
            ],
            aggregate.Windows);
    }

    [Fact]
    public async Task Aggregation_covers_from_inclusive_to_exclusive_and_hour_windows()
    {
        Store.Commit(Of("watch-1", "patient-1", 0,
            new(VitalKind.Steps, T0 - 1, 1),
            new(VitalKind.Steps, T0, 100),
            new(VitalKind.Steps, T0 + 1_800_000, 200),
            new(VitalKind.Steps, T0 + 3_600_000, 400)));

        var aggregate = await Store.AggregateAsync("patient-1", T0, T0 + 3_600_000, Resolution.Hour);

        var window = Assert.Single(aggregate.Windows);
        Assert.Equal(VitalKind.Steps, window.Kind);
        Assert.Equal(T0, window.Window.StartMs);
        Assert.Equal(2, window.Window.Count);
        Assert.Equal(300, window.Window.Sum);
        Assert.Equal(200, window.Window.Last);
    }

    [Fact]
    public async Task The_highest_commit_id_is_that_of_the_latest_commit_holding_the_patients_readings()
    {
        var first = Store.Commit(Of("watch-1", "patient-1", 0, new VitalReading(VitalKind.HeartRate, T0, 70))).CommitId;
        var second = Store.Commit(Of("watch-1", "patient-1", 0, new VitalReading(VitalKind.HeartRate, T0 + 1_000, 71))).CommitId;
        Store.Commit(Of("watch-2", "patient-2", 0, new VitalReading(VitalKind.HeartRate, T0, 72)));

        var aggregate = await Store.AggregateAsync("patient-1", T0, T0 + 60_000, Resolution.Minute);

        Assert.True(second > first);
        Assert.Equal(second, aggregate.HighestCommitId);
        Assert.Equal(2, Assert.Single(aggregate.Windows).Window.Count);
    }

    [Fact]
    public async Task A_patient_without_readings_aggregates_to_nothing()
    {
        Store.Commit(Of("watch-1", "patient-1", 0, new VitalReading(VitalKind.HeartRate, T0, 70)));

        var aggregate = await Store.AggregateAsync("patient-9", T0, T0 + 60_000, Resolution.Minute);

        Assert.Empty(aggregate.Windows);
        Assert.Equal(0, aggregate.HighestCommitId);
    }

    [Fact]
    public async Task Patients_asking_at_once_each_get_their_own_aggregate()
    {
        // More patients than one query reads for, each with readings of its own over two commits, and one without any.
        const int Patients = AggregateReads.MaxPatientsPerRead + 44;
        var first = Store.Commit([.. Enumerable.Range(1, Patients).Select(i => Of($"watch-{i}", $"patient-{i}", 0, new VitalReading(VitalKind.HeartRate, T0 + i, i)))]).CommitId;
        var second = Store.Commit([.. Enumerable.Range(1, Patients).Where(i => i % 2 == 0)
            .Select(i => Of($"watch-{i}", $"patient-{i}", 0, new VitalReading(VitalKind.HeartRate, T0 + 1_000 + i, i + 1), new VitalReading(VitalKind.Steps, T0 + 2_000, i)))]).CommitId;

        var together = await Task.WhenAll(Enumerable.Range(0, Patients + 1).Select(i => Store.AggregateAsync($"patient-{i}", T0, T0 + 60_000, Resolution.Minute)));

        Assert.Empty(together[0].Windows);
        Assert.Equal(0, together[0].HighestCommitId);
        for (var i = 1; i <= Patients; i++)
        {
            var aggregate = together[i];
            Assert.Equal(i % 2 == 0 ? second : first, aggregate.HighestCommitId);
            var heartRate = Assert.Single(aggregate.Windows, window => window.Kind == VitalKind.HeartRate).Window;
            Assert.Equal(i % 2 == 0 ? 2 : 1, heartRate.Count);
            Assert.Equal(i % 2 == 0 ? i + i + 1 : i, heartRate.Sum);
            Assert.Equal(i % 2 == 0 ? i + 1 : i, heartRate.Last);
            Assert.Equal(i % 2 == 0 ? 2 : 1, aggregate.Windows.Count);
            Assert.Equal((await Store.AggregateAsync($"patient-{i}", T0, T0 + 60_000, Resolution.Minute)).Windows, aggregate.Windows);
        }
    }

    [Fact]
    public void Commit_ids_increase_with_every_commit()
    {
        var ids = new List<long>();
        for (var i = 0; i < 4; i++)
        {
            ids.Add(Store.Commit(Of("watch-1", "patient-1", 0, new VitalReading(VitalKind.HeartRate, T0 + i, 70))).CommitId);
        }

        Assert.True(ids[0] > 0);
        Assert.Equal(ids.Order().Distinct(), ids);
        Assert.Equal(4, ids.Distinct().Count());
    }

    [Fact]
    public void A_large_commit_is_stored_whole_or_not_at_all()
    {
        // 250,000 readings, more than DuckDB's own vectors and row groups hold: the commit's transaction spans them all.
        // This one fails on its quarantined reading, after all its readings were inserted.
        Store.Commit(Of("watch-1", "patient-1", 1, new VitalReading(VitalKind.HeartRate, T0 - 1_000, 60)));
        var batches = Enumerable.Range(0, 250)
            .Select(b => Of("watch-1", "patient-1", (ulong)b + 2, [.. Enumerable.Range(0, 1_000).Select(r => new VitalReading(VitalKind.HeartRate, T0 + (b * 1_000) + r, 70))]))
            .ToArray();
        batches[^1] = batches[^1] with { Quarantined = new[] { new VitalReading(VitalKind.HeartRate, T0 + 250_000, 900) } };
        Execute(_file.Database, "ALTER TABLE readings_1.quarantine RENAME TO quarantine_away");

        Assert.ThrowsAny<DuckDB.NET.Data.DuckDBException>(() => Store.Commit(batches));
        Assert.Equal(1L, Scalar(_file.Database, "SELECT count(*) FROM all_readings"));

        Execute(_file.Database, "ALTER TABLE readings_1.quarantine_away RENAME TO quarantine");
        var again = Store.Commit(batches);
        Assert.All(again.Outcomes, outcome => Assert.Equal(CommitOutcome.Stored, outcome));
        Assert.Equal(250_001L, Scalar(_file.Database, "SELECT count(*) FROM all_readings"));
        Assert.Equal(1L, Scalar(_file.Database, "SELECT count(*) FROM all_quarantine"));
    }

    [Fact]
    public void Readings_a_failed_commit_may_have_stored_are_not_stored_again_when_resent()
    {
        // A commit that fails can still have stored its rows (its COMMIT can fail after the WAL is written). Here the
        // commit fails, and the file is then given its readings by hand, as such a commit would have stored them.
        var first = Store.Commit(Of("watch-1", "patient-1", 1, new VitalReading(VitalKind.HeartRate, T0, 60)));
        var batch = Of("watch-1", "patient-1", 2, new VitalReading(VitalKind.HeartRate, T0 + 1_000, 61), new VitalReading(VitalKind.HeartRate, T0 + 2_000, 62));
        Execute(_file.Database, "ALTER TABLE readings_1.readings RENAME TO readings_away");
        Assert.Throws<DuckDbStoreException>(() => Store.Commit(batch));
        Execute(_file.Database, "ALTER TABLE readings_1.readings_away RENAME TO readings");
        Execute(_file.Database, $"INSERT INTO readings_1.readings SELECT series_id, ts + to_seconds(i), 60 + i, {first.CommitId + 1}, 2 FROM readings_1.readings, range(1, 3) t(i)");

        var resent = Store.Commit(batch);
        var next = Store.Commit(Of("watch-1", "patient-1", 3, new VitalReading(VitalKind.HeartRate, T0 + 3_000, 63)));

        Assert.Equal([CommitOutcome.Stored], resent.Outcomes);
        Assert.Equal(2, resent.Batches[0].Duplicates);
        Assert.Equal(4L, Scalar(_file.Database, "SELECT count(*) FROM all_readings"));
        Assert.Equal(4L, Scalar(_file.Database, "SELECT count(DISTINCT ts) FROM all_readings"));

        // The failed commit's id is not handed out again.
        Assert.True(resent.CommitId > first.CommitId + 1);
        Assert.True(next.CommitId > resent.CommitId);
    }

    [Fact]
    public async Task Raw_readings_come_back_oldest_first_within_the_range_and_limit()
    {
        Store.Commit(Of("watch-1", "patient-1", 0,
            new(VitalKind.HeartRate, T0 + 30_000, 73),
            new(VitalKind.HeartRate, T0 - 1, 60),
            new(VitalKind.OxygenSaturation, T0 + 15_000, 97)));
        Store.Commit(Of("watch-1", "patient-1", 0,
            new(VitalKind.HeartRate, T0 + 10_000, 71),
            new(VitalKind.HeartRate, T0, 70),
            new(VitalKind.HeartRate, T0 + 60_000, 99)));
        Store.Commit(Of("watch-2", "patient-2", 0, new VitalReading(VitalKind.HeartRate, T0 + 5_000, 140)));

        var all = await Store.ReadAsync("patient-1", VitalKind.HeartRate, T0, T0 + 60_000, limit: 100);
        var firstTwo = await Store.ReadAsync("patient-1", VitalKind.HeartRate, T0, T0 + 60_000, limit: 2);

        Assert.Equal(
            [new StoredReading("watch-1", VitalKind.HeartRate, T0, 70), new StoredReading("watch-1", VitalKind.HeartRate, T0 + 10_000, 71), new StoredReading("watch-1", VitalKind.HeartRate, T0 + 30_000, 73)],
            all);
        Assert.Equal(all.Take(2), firstTwo);
    }

    [Fact]
    public void Commit_ids_keep_increasing_after_the_store_is_reopened()
    {
        var before = Store.Commit(Of("watch-1", "patient-1", 0, new VitalReading(VitalKind.HeartRate, T0, 70))).CommitId;

        _file.Reopen();
        var after = Store.Commit(Of("watch-1", "patient-1", 0, new VitalReading(VitalKind.HeartRate, T0 + 1, 71))).CommitId;

        Assert.True(after > before, $"commit {after} after reopening is not later than commit {before}");
    }
}
