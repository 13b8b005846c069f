using DuckDB.NET.Data;
using Telemetry.Core.Readings;
using Telemetry.Core.Storage;
using Telemetry.Core.Vitals;
using Telemetry.Storage.DuckDb;
using static Telemetry.Storage.Tests.DuckDb.Batches;
using static Telemetry.Storage.Tests.DuckDb.Sql;

namespace Telemetry.Storage.Tests.DuckDb;

/// <summary>
/// Readings are stored by series id (patient, device, vital): ids survive a restart, a failed commit's new series are
/// stored by the next commit, and a file from before series ids is moved to them when it opens.
/// </summary>
public sealed class SeriesTests : IDisposable
{
    private readonly TemporaryDirectory _directory = new();

    public void Dispose() => _directory.Dispose();

    [Fact]
    public async Task A_failed_commits_new_series_are_stored_by_the_next_commit()
    {
        using (var file = new StoreOver(_directory))
        {
            file.Store.Commit(Of("watch-1", "patient-1", 1, new VitalReading(VitalKind.HeartRate, T0, 60)));

            // The quarantine table moved away from under the store fails the commit after the batch's new series (patient-2's)
            // got their ids and its readings were appended.
            Execute(file.Database, "ALTER TABLE readings_1.quarantine RENAME TO quarantine_away");
            var refused = Of("watch-2", "patient-2", 1, new VitalReading(VitalKind.HeartRate, T0, 70)) with
            {
                Quarantined = new[] { new VitalReading(VitalKind.HeartRate, T0 + 1, 900) },
            };
            Assert.ThrowsAny<DuckDBException>(() => file.Store.Commit(refused));
            Execute(file.Database, "ALTER TABLE readings_1.quarantine_away RENAME TO quarantine");

            file.Store.Commit(
                Of("watch-3", "patient-3", 1, new VitalReading(VitalKind.HeartRate, T0, 80)),
                Of("watch-2", "patient-2", 1, new VitalReading(VitalKind.HeartRate, T0, 70)));
        }

        using var reopened = new StoreOver(_directory);
        Assert.Equal(new[] { 60.0 }, await Values(reopened.Store, "patient-1"));
        Assert.Equal(new[] { 70.0 }, await Values(reopened.Store, "patient-2"));
        Assert.Equal(new[] { 80.0 }, await Values(reopened.Store, "patient-3"));
        Assert.Equal(3L, Scalar(reopened.Database, "SELECT count(*) FROM all_series"));
        Assert.Equal(3L, Scalar(reopened.Database, "SELECT count(DISTINCT series_id) FROM all_series"));
    }

    [Fact]
    public async Task A_device_moved_to_another_patient_starts_a_series_of_its_own()
    {
        using (var file = new StoreOver(_directory))
        {
            file.Store.Commit(Of("watch-1", "patient-1", 1, new VitalReading(VitalKind.HeartRate, T0, 60)));
            file.Store.Commit(Of("watch-1", "patient-2", 2, new VitalReading(VitalKind.HeartRate, T0 + 1_000, 61)));
        }

        using var reopened = new StoreOver(_directory);
        Assert.Equal(new[] { 60.0 }, await Values(reopened.Store, "patient-1"));
        Assert.Equal(new[] { 61.0 }, await Values(reopened.Store, "patient-2"));

        // The device's readings stay one series of times for recognising repeats, whichever patient they went to.
        var resent = reopened.Store.Commit(Of("watch-1", "patient-2", 1, new VitalReading(VitalKind.HeartRate, T0, 60)));
        Assert.Equal([CommitOutcome.Duplicate], resent.Outcomes);
    }

    [Fact]
    public async Task A_file_from_before_series_ids_is_moved_to_them_once_and_keeps_every_reading_and_commit()
    {
        WriteFile($"""
            CREATE TABLE readings (patient_id VARCHAR NOT NULL, device_id VARCHAR NOT NULL, kind UTINYINT NOT NULL,
                                   ts TIMESTAMP NOT NULL, value DOUBLE NOT NULL, commit_id BIGINT NOT NULL);
            CREATE TABLE device_sequences (device_id VARCHAR NOT NULL, first_seq UBIGINT NOT NULL, last_seq UBIGINT NOT NULL);
            INSERT INTO readings VALUES
                ('patient-1', 'watch-1', {(byte)VitalKind.HeartRate}, make_timestamp({T0 * 1_000}), 60, 1),
                ('patient-1', 'watch-1', {(byte)VitalKind.OxygenSaturation}, make_timestamp({T0 * 1_000}), 97, 1),
                ('patient-2', 'watch-2', {(byte)VitalKind.HeartRate}, make_timestamp({T0 * 1_000}), 70, 1),
                ('patient-1', 'watch-1', {(byte)VitalKind.HeartRate}, make_timestamp({(T0 + 1_000) * 1_000}), 61, 2);
            INSERT INTO device_sequences VALUES ('watch-1', 1, 2), ('watch-2', 1, 1);
            """);

        using (var file = new StoreOver(_directory))
        {
            Assert.Equal(new[] { 60.0, 61.0 }, await Values(file.Store, "patient-1"));
            Assert.Equal(new[] { 70.0 }, await Values(file.Store, "patient-2"));
            var aggregate = await file.Store.AggregateAsync("patient-1", T0, T0 + 60_000, Core.Rollups.Resolution.Minute);
            Assert.Equal(2, aggregate.HighestCommitId);
            Assert.Equal(2, aggregate.Windows.Single(w => w.Kind == VitalKind.HeartRate).Window.Count);

            // Resending the last batch is recognised by its number and time; a new one continues the commit ids.
            var resent = file.Store.Commit(Of("watch-1", "patient-1", 2, new VitalReading(VitalKind.HeartRate, T0 + 1_000, 61)));
            var next = file.Store.Commit(Of("watch-1", "patient-1", 3, new VitalReading(VitalKind.HeartRate, T0 + 2_000, 62)));
            Assert.Equal([CommitOutcome.Duplicate], resent.Outcomes);
            Assert.Equal(4, next.CommitId);
        }

        using var reopened = new StoreOver(_directory);
        Assert.Equal(new[] { 60.0, 61.0, 62.0 }, await Values(reopened.Store, "patient-1"));
        Assert.Equal(0L, Scalar(reopened.Database, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'readings_before_series'"));
        Assert.Equal(3L, Scalar(reopened.Database, "SELECT count(*) FROM series"));
    }

    [Fact]
    public void Series_a_commit_stored_before_reporting_a_failure_are_not_stored_again()
    {
        using var database = new DuckDbDatabase(_directory.Options);
        using var connection = database.OpenConnection();
        var catalog = new SeriesCatalog(connection);
        var id = catalog.IdOf("patient-1", "watch-1", VitalKind.HeartRate);
        var (first, second) = (database.Readings.Catalogs.ElementAt(1), database.Readings.Catalogs.ElementAt(2));
        using (var transaction = connection.BeginTransaction())
        {
            catalog.AppendStaged(connection, second);
            transaction.Commit();
        }

        // The commit reported an error although its transaction was durable: the series stay staged, and the next
        // commit must find them in the files rather than write them twice (every join would double their readings),
        // even when it goes to the other readings file.
        catalog.Failed();
        var other = catalog.IdOf("patient-2", "watch-2", VitalKind.HeartRate);
        using (var transaction = connection.BeginTransaction())
        {
            catalog.AppendStaged(connection, first);
            transaction.Commit();
        }

        catalog.Committed();
        Assert.Equal(2L, Scalar(database, "SELECT count(*) FROM all_series"));
        var reloaded = new SeriesCatalog(connection);
        Assert.Equal((id, other), (reloaded.IdOf("patient-1", "watch-1", VitalKind.HeartRate), reloaded.IdOf("patient-2", "watch-2", VitalKind.HeartRate)));
    }

    [Fact]
    public async Task A_file_with_series_ids_but_no_sequence_column_gets_one_and_keeps_its_logged_numbers()
    {
        WriteFile($"""
            CREATE TABLE series (series_id INTEGER NOT NULL, patient_id VARCHAR NOT NULL, device_id VARCHAR NOT NULL, kind UTINYINT NOT NULL);
            CREATE TABLE readings (series_id INTEGER NOT NULL, ts TIMESTAMP NOT NULL, value DOUBLE NOT NULL, commit_id BIGINT NOT NULL);
            CREATE TABLE device_sequences (device_id VARCHAR NOT NULL, first_seq UBIGINT NOT NULL, last_seq UBIGINT NOT NULL);
            INSERT INTO series VALUES (1, 'patient-1', 'watch-1', {(byte)VitalKind.HeartRate});
            INSERT INTO readings VALUES (1, make_timestamp({T0 * 1_000}), 60, 1), (1, make_timestamp({(T0 + 1_000) * 1_000}), 61, 2);
            INSERT INTO device_sequences VALUES ('watch-1', 1, 2);
            """);

        using (var file = new StoreOver(_directory))
        {
            var resent = file.Store.Commit(Of("watch-1", "patient-1", 2, new VitalReading(VitalKind.HeartRate, T0 + 1_000, 61)));
            var next = file.Store.Commit(Of("watch-1", "patient-1", 3, new VitalReading(VitalKind.HeartRate, T0 + 2_000, 62)));
            Assert.Equal([CommitOutcome.Duplicate], resent.Outcomes);
            Assert.Equal([CommitOutcome.Stored], next.Outcomes);
        }

        using var reopened = new StoreOver(_directory);
        Assert.Equal(new[] { 60.0, 61.0, 62.0 }, await Values(reopened.Store, "patient-1"));
        var again = reopened.Store.Commit(Of("watch-1", "patient-1", 3, new VitalReading(VitalKind.HeartRate, T0 + 2_000, 62)));
        Assert.Equal([CommitOutcome.Duplicate], again.Outcomes);
    }

    private static async Task<double[]> Values(DuckDbRawSeriesStore store, string patientId) =>
        [.. (await store.ReadAsync(patientId, VitalKind.HeartRate, T0 - 60_000, T0 + 60_000, 100)).Select(reading => reading.Value)];

    /// <summary>Writes the test's file directly, as an older version of the server left it.</summary>
    private void WriteFile(string sql)
    {
        using var connection = new DuckDBConnection($"Data Source={_directory.Options.Value.Path}");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    /// <summary>The database and the store over the directory's file, closed together.</summary>
    private sealed class StoreOver(TemporaryDirectory directory) : IDisposable
    {
        private DuckDbRawSeriesStore? _store;

        public DuckDbDatabase Database { get; } = new(directory.Options);

        public DuckDbRawSeriesStore Store => _store ??= new DuckDbRawSeriesStore(Database);

        public void Dispose()
        {
            _store?.Dispose();
            Database.Dispose();
        }
    }
}
