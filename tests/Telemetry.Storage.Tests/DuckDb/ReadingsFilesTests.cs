using Telemetry.Core.Readings;
using Telemetry.Core.Rollups;
using Telemetry.Core.Vitals;
using Telemetry.Storage.DuckDb;
using static Telemetry.Storage.Tests.DuckDb.Batches;
using static Telemetry.Storage.Tests.DuckDb.Sql;

namespace Telemetry.Storage.Tests.DuckDb;

/// <summary>
/// The readings alternate between two files beside the database file, so that a checkpoint of one holds no commit:
/// every query reads them all, each commit stays whole in one, and a restart finds every batch number in any.
/// </summary>
public sealed class ReadingsFilesTests : IDisposable
{
    private const int Devices = 10;

    // The smallest WAL limit there is, so a few hundred kilobytes of readings move between the files several times.
    private readonly TemporaryDirectory _directory = new();
    private readonly Microsoft.Extensions.Options.IOptions<DuckDbOptions> _options;
    private DuckDbDatabase _database;
    private DuckDbRawSeriesStore _store;

    public ReadingsFilesTests()
    {
        _options = Microsoft.Extensions.Options.Options.Create(new DuckDbOptions { Path = Path.Combine(_directory.Path, "telemetry.duckdb"), CheckpointWalBytes = 65_536 });
        _database = new DuckDbDatabase(_options);
        _store = new DuckDbRawSeriesStore(_database);
    }

    public void Dispose()
    {
        Close();
        _directory.Dispose();
    }

    [Fact]
    public void The_readings_files_lie_beside_the_database()
    {
        Assert.Equal([Path.Combine(_directory.Path, "telemetry.readings-1.duckdb"), Path.Combine(_directory.Path, "telemetry.readings-2.duckdb")], _database.ReadingsPaths);
        Assert.All(_database.ReadingsPaths, path => Assert.True(File.Exists(path)));
    }

    [Fact]
    public async Task Commits_move_between_the_files_and_every_reading_is_read_once_from_either()
    {
        var batches = Numbered(commits: 40, perCommit: 250);
        CommitAll(batches, perCommit: 250);

        Assert.True(Scalar(_database, "SELECT count(*) FROM readings_1.readings") > 0);
        Assert.True(Scalar(_database, "SELECT count(*) FROM readings_2.readings") > 0);
        Assert.Equal(0L, Scalar(_database, "SELECT count(*) FROM readings"));
        Assert.Equal(batches.Count, Scalar(_database, "SELECT count(*) FROM all_readings"));
        Assert.Equal(Devices, Scalar(_database, "SELECT count(*) FROM all_series"));

        var aggregate = await _store.AggregateAsync("patient-3", T0, T0 + 3_600_000, Resolution.Hour);
        Assert.Equal(batches.Count / Devices, Assert.Single(aggregate.Windows).Window.Count);
        var read = await _store.ReadAsync("patient-3", VitalKind.HeartRate, T0, T0 + 3_600_000, limit: 10_000);
        Assert.Equal(batches.Count / Devices, read.Select(reading => reading.TimestampMs).Distinct().Count());
        Assert.Equal(batches.Count / Devices, read.Count);
    }

    [Fact]
    public void Batches_committed_to_either_file_are_duplicates_when_resent_before_and_after_a_restart()
    {
        // More batch numbers than a fold of the sequence log takes, so a fold lands in one of the files.
        var batches = Numbered(commits: 110, perCommit: 1_000);
        CommitAll(batches, perCommit: 1_000);

        foreach (var restart in (bool[])[false, true])
        {
            if (restart)
            {
                Reopen();
            }

            foreach (var chunk in batches.Chunk(1_000))
            {
                Assert.All(_store.Commit(chunk).Outcomes, outcome => Assert.Equal(CommitOutcome.Duplicate, outcome));
            }
        }

        Assert.Equal(batches.Count, Scalar(_database, "SELECT count(*) FROM all_readings"));
        Assert.True(Scalar(_database, "SELECT max(commit_id) FROM all_sequence_folds") >= 100, "no fold during the commits");
    }

    [Fact]
    public void Readings_resent_without_their_batch_number_are_found_in_either_file()
    {
        var batches = Numbered(commits: 40, perCommit: 250);
        CommitAll(batches, perCommit: 250);
        Reopen();

        var resent = batches.Select(batch => batch with { Sequence = 0 }).ToArray();
        foreach (var chunk in resent.Chunk(250))
        {
            _store.Commit(chunk);
        }

        Assert.Equal(batches.Count, Scalar(_database, "SELECT count(*) FROM all_readings"));
    }

    [Fact]
    public async Task A_commit_to_the_second_file_keeps_its_new_series_and_quarantine_with_its_readings()
    {
        CommitUntilTheSecondFileIsActive();

        var batch = Of("patch-1", "patient-new", 1, new VitalReading(VitalKind.BodyTemperature, T0, 36.6)) with
        {
            Quarantined = new[] { new VitalReading(VitalKind.BodyTemperature, T0 + 1_000, 90) },
        };
        _store.Commit(batch);
        Reopen();

        Assert.Equal(1L, Scalar(_database, "SELECT count(*) FROM readings_2.series WHERE patient_id = 'patient-new'"));
        Assert.Equal(1L, Scalar(_database, "SELECT count(*) FROM readings_2.quarantine WHERE device_id = 'patch-1'"));
        Assert.Equal([36.6], (await _store.ReadAsync("patient-new", VitalKind.BodyTemperature, T0, T0 + 60_000, limit: 10)).Select(reading => reading.Value));
        Assert.Equal(90, Assert.Single(await _store.ReadQuarantineAsync("patch-1", limit: 10)).Reading.Value);
        Assert.Equal([CommitOutcome.Duplicate], _store.Commit(batch).Outcomes);
    }

    [Fact]
    public async Task Retention_deletes_old_readings_from_every_file()
    {
        var batches = Numbered(commits: 40, perCommit: 250);
        CommitAll(batches, perCommit: 250);

        // And one the database file kept from before the readings files.
        Execute(_database, $"INSERT INTO series VALUES (999, 'patient-old', 'watch-old', 1); INSERT INTO readings VALUES (999, make_timestamp({T0 * 1_000}), 70, 0, 0);");
        Assert.Equal(1L, Scalar(_database, "SELECT count(*) FROM all_readings WHERE series_id = 999"));

        var deleted = await _store.DeleteBeforeAsync(T0 + 3_600_000);

        Assert.Equal(batches.Count + 1, deleted);
        Assert.Equal(0L, Scalar(_database, "SELECT count(*) FROM all_readings"));
    }

    [Fact]
    public async Task The_file_left_is_checkpointed_in_the_background()
    {
        CommitUntilTheSecondFileIsActive();

        // The checkpoint thread wakes when the commit loop moves; nothing else checkpoints at this WAL size. DuckDB
        // empties the log inside the CHECKPOINT statement, and the thread counts it once the statement returns.
        var first = _database.ReadingsPaths[0] + ".wal";
        await Until(() => !File.Exists(first) || new FileInfo(first).Length < _options.Value.CheckpointWalBytes, "the file left was not checkpointed");
        await Until(() => _database.Readings.Checkpoints > 0, "the checkpoint was not counted");
    }

    [Fact]
    public async Task A_checkpoint_refused_while_a_transaction_holds_the_file_is_counted_and_tried_again()
    {
        using var meterFactory = new MeterFactory();
        Close();
        _database = new DuckDbDatabase(_options, meterFactory: meterFactory);
        _store = new DuckDbRawSeriesStore(_database);
        var (failures, checkpoints) = (0, 0);
        using var listener = new System.Diagnostics.Metrics.MeterListener();
        listener.InstrumentPublished = (instrument, listening) =>
        {
            if (instrument.Meter.Scope == meterFactory)
            {
                listening.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((instrument, _, tags, _) =>
        {
            if (instrument.Name == ReadingsFiles.CheckpointFailures && OfTheFirstReadingsFile(tags))
            {
                Interlocked.Increment(ref failures);
            }
        });
        listener.SetMeasurementEventCallback<double>((instrument, _, tags, _) =>
        {
            if (instrument.Name == ReadingsFiles.CheckpointDuration && OfTheFirstReadingsFile(tags))
            {
                Interlocked.Increment(ref checkpoints);
            }
        });
        listener.Start();

        // An UPDATE holds the file's checkpoint lock until its transaction ends (as a grain's state write holds the
        // database file's briefly).
        _store.Commit(Of("watch-0", "patient-0", 1, new VitalReading(VitalKind.HeartRate, T0 - 1, 70)));
        using var holder = _database.OpenConnection();
        using (var transaction = holder.BeginTransaction())
        {
            using (var update = holder.CreateCommand())
            {
                update.CommandText = "UPDATE readings_1.readings SET value = 71";
                update.ExecuteNonQuery();
            }

            CommitUntilTheSecondFileIsActive();
            await Until(() => Volatile.Read(ref failures) > 0, "the refused checkpoint was not counted");
            Assert.Equal(0, Volatile.Read(ref checkpoints));
            transaction.Commit();
        }

        await Until(() => Volatile.Read(ref checkpoints) > 0, "the checkpoint was not tried again once the transaction ended");
        var walSizes = new List<long>();
        listener.SetMeasurementEventCallback<long>((instrument, value, _, _) =>
        {
            if (instrument.Name == ReadingsFiles.WalSize)
            {
                walSizes.Add(value);
            }
        });
        listener.RecordObservableInstruments();
        Assert.Equal(3, walSizes.Count);
    }

    /// <summary>Meters of this test's database alone (tests run side by side, each with its own).</summary>
    private sealed class MeterFactory : System.Diagnostics.Metrics.IMeterFactory
    {
        private readonly List<System.Diagnostics.Metrics.Meter> _meters = [];

        public System.Diagnostics.Metrics.Meter Create(System.Diagnostics.Metrics.MeterOptions options)
        {
            var meter = new System.Diagnostics.Metrics.Meter(options.Name, options.Version, options.Tags, scope: this);
            _meters.Add(meter);
            return meter;
        }

        public void Dispose() => _meters.ForEach(meter => meter.Dispose());
    }

    private static bool OfTheFirstReadingsFile(ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        foreach (var tag in tags)
        {
            if (tag.Key == "file" && Equals(tag.Value, "telemetry.readings-1.duckdb"))
            {
                return true;
            }
        }

        return false;
    }

    private static async Task Until(Func<bool> condition, string failure)
    {
        var waited = System.Diagnostics.Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(waited.Elapsed < TimeSpan.FromSeconds(30), failure);
            await Task.Delay(20);
        }
    }

    [Fact]
    public void A_commit_larger_than_two_row_groups_is_written_to_the_file_not_its_wal_and_is_whole_after_a_crash()
    {
        // The pipeline's largest commit (Telemetry:Ingest:MaxReadingsPerCommit): DuckDB writes its full row groups
        // (122,880 rows) into the file as they fill, and the WAL records where they are; the commit is durable all the same.
        // A store of its own, at the default WAL limit: at this class's, the copy below could race a checkpoint.
        using var file = new RawStoreFile();
        var batches = Enumerable.Range(0, 5_000).Select(i => Of(
            $"watch-{i % Devices}", $"patient-{i % Devices}", (ulong)(i / Devices) + 1,
            [.. Enumerable.Range(0, 50).Select(j => new VitalReading(VitalKind.HeartRate, T0 + ((i / Devices) * 50L) + j, 60 + (j % 40)))])).ToArray();
        Assert.All(file.Store.Commit(batches).Outcomes, outcome => Assert.Equal(CommitOutcome.Stored, outcome));

        var active = file.Database.ReadingsPaths[0];
        Assert.True(new FileInfo(active + ".wal").Length < (2 << 20), $"the WAL took the rows: {new FileInfo(active + ".wal").Length:N0} bytes");

        // Crashed now: the files as they stand, opened again.
        var crashed = Path.Combine(file.Directory.Path, "crashed");
        Directory.CreateDirectory(crashed);
        foreach (var path in Directory.GetFiles(file.Directory.Path))
        {
            File.Copy(path, Path.Combine(crashed, Path.GetFileName(path)));
        }

        using var reopened = new DuckDbDatabase(Microsoft.Extensions.Options.Options.Create(new DuckDbOptions { Path = Path.Combine(crashed, "telemetry.duckdb") }));
        using var store = new DuckDbRawSeriesStore(reopened);
        Assert.Equal(250_000L, Scalar(reopened, "SELECT count(*) FROM all_readings"));
        Assert.Equal(batches.Sum(batch => batch.Readings.ToArray().Sum(reading => (long)reading.Value)), Scalar(reopened, "SELECT sum(value)::BIGINT FROM all_readings"));
        Assert.All(store.Commit(batches[^10..]).Outcomes, outcome => Assert.Equal(CommitOutcome.Duplicate, outcome));
    }

    [Fact]
    public void A_database_whose_second_file_is_missing_refuses_to_open()
    {
        CommitUntilTheSecondFileIsActive();
        _store.Commit(Of("patch-1", "patient-new", 1, new VitalReading(VitalKind.BodyTemperature, T0, 36.6)));
        Close();
        File.Move(SecondPath, SecondPath + ".away");

        var refusal = RefusalToOpen();

        Assert.Contains(SecondPath, refusal.Message, StringComparison.Ordinal);
        Assert.Contains("missing", refusal.Message, StringComparison.Ordinal);
        File.Move(SecondPath + ".away", SecondPath);
        ReopenDatabase();
        Assert.Equal(1L, Scalar(_database, "SELECT count(*) FROM readings_2.readings"));
    }

    [Fact]
    public void A_second_file_of_another_database_is_refused()
    {
        _store.Commit(Of("watch-1", "patient-1", 1, new VitalReading(VitalKind.HeartRate, T0, 70)));
        Close();
        using var other = new TemporaryDirectory();
        var otherOptions = Microsoft.Extensions.Options.Options.Create(new DuckDbOptions { Path = Path.Combine(other.Path, "telemetry.duckdb") });
        new DuckDbDatabase(otherOptions).Dispose();
        File.Copy(Path.Combine(other.Path, "telemetry.readings-2.duckdb"), SecondPath, overwrite: true);
        File.Delete(SecondPath + ".wal");

        var refusal = RefusalToOpen();

        Assert.Contains("not the readings file", refusal.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_start_stopped_part_way_through_pairing_pairs_with_the_empty_readings_files()
    {
        // The first readings file got the id; the second and the database did not (and no store opened, to fold its
        // sequence log into the first).
        _store.Dispose();
        Execute(_database, "DELETE FROM readings_pair; DELETE FROM readings_2.readings_pair; DELETE FROM readings_1.sequence_folds;");
        _database.Dispose();

        ReopenDatabase();

        Assert.Equal(1L, Scalar(_database, "SELECT count(*) FROM readings_pair"));
        Assert.Equal(1L, Scalar(_database, "SELECT count(*) FROM readings_pair p JOIN readings_1.readings_pair USING (id) JOIN readings_2.readings_pair USING (id)"));
    }

    [Fact]
    public void A_new_database_beside_readings_files_that_hold_readings_is_refused()
    {
        _store.Commit(Of("watch-1", "patient-1", 1, new VitalReading(VitalKind.HeartRate, T0, 70)));
        Close();
        File.Delete(_database.FilePath);
        File.Delete(_database.FilePath + ".wal");

        var refusal = RefusalToOpen();

        Assert.Contains("holds readings of another database", refusal.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_readings_file_of_the_first_form_of_this_layout_is_refused_rather_than_left_unread()
    {
        Close();
        File.WriteAllText(Path.Combine(_directory.Path, "telemetry.readings.duckdb"), string.Empty);

        var refusal = RefusalToOpen();

        Assert.Contains("telemetry.readings.duckdb", refusal.Message, StringComparison.Ordinal);
    }

    private string SecondPath => Path.Combine(_directory.Path, "telemetry.readings-2.duckdb");

    /// <summary>Batches of one reading each, numbered per device, enough for <paramref name="commits"/> of <paramref name="perCommit"/>.</summary>
    private static List<DeviceBatch> Numbered(int commits, int perCommit) =>
        [.. Enumerable.Range(0, commits * perCommit).Select(i => Of(
            $"watch-{i % Devices}", $"patient-{i % Devices}", (ulong)(i / Devices) + 1,
            new VitalReading(VitalKind.HeartRate, T0 + ((i / Devices) * 100L), 60 + (i % 40))))];

    private void CommitAll(List<DeviceBatch> batches, int perCommit)
    {
        foreach (var chunk in batches.Chunk(perCommit))
        {
            Assert.All(_store.Commit(chunk).Outcomes, outcome => Assert.Equal(CommitOutcome.Stored, outcome));
        }
    }

    private void CommitUntilTheSecondFileIsActive()
    {
        var next = 0;
        while (_database.Readings.Active != "readings_2")
        {
            Assert.True(next < 100_000, "the commits never moved to the second file");
            _store.Commit([.. Enumerable.Range(next, 500).Select(i => Of("watch-0", "patient-0", (ulong)i + 1, new VitalReading(VitalKind.HeartRate, T0 + i, 70)))]);
            next += 500;

            // The move happens between commits, when the next one starts.
            _database.Readings.BetweenCommits();
        }
    }

    private void Reopen()
    {
        Close();
        ReopenDatabase();
    }

    private void Close()
    {
        _store.Dispose();
        _database.Dispose();
    }

    private InvalidOperationException RefusalToOpen() => Assert.Throws<InvalidOperationException>(() => new DuckDbDatabase(_options));

    private void ReopenDatabase()
    {
        _database = new DuckDbDatabase(_options);
        _store = new DuckDbRawSeriesStore(_database);
    }
}
