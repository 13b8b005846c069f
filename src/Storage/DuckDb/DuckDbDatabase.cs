using DuckDB.NET.Data;
using Microsoft.Extensions.Options;

namespace Telemetry.Storage.DuckDb;

/// <summary>The embedded DuckDB file: creates the schema once and hands out connections to it.</summary>
public sealed class DuckDbDatabase : IDisposable
{
    private const string Schema = """
        CREATE TABLE IF NOT EXISTS quarantine (
            patient_id VARCHAR NOT NULL,
            device_id VARCHAR NOT NULL,
            kind UTINYINT NOT NULL,
            ts TIMESTAMP NOT NULL,
            value DOUBLE NOT NULL,
            reason VARCHAR NOT NULL,
            commit_id BIGINT NOT NULL);
        CREATE TABLE IF NOT EXISTS device_sequences (
            device_id VARCHAR NOT NULL,
            first_seq UBIGINT NOT NULL,
            last_seq UBIGINT NOT NULL);
        CREATE TABLE IF NOT EXISTS sequence_folds (
            commit_id BIGINT NOT NULL);
        CREATE TABLE IF NOT EXISTS grain_state (
            grain_type VARCHAR NOT NULL,
            grain_id VARCHAR NOT NULL,
            etag VARCHAR NOT NULL,
            data BLOB NOT NULL,
            PRIMARY KEY (grain_type, grain_id));
        CREATE TABLE IF NOT EXISTS alert_events (
            position BIGINT PRIMARY KEY,
            patient_id VARCHAR NOT NULL,
            seq BIGINT NOT NULL,
            alert_id VARCHAR NOT NULL,
            type UTINYINT NOT NULL,
            occurred_at TIMESTAMP NOT NULL,
            event VARCHAR NOT NULL,
            UNIQUE (patient_id, seq));
        CREATE TABLE IF NOT EXISTS alerts (
            alert_id VARCHAR PRIMARY KEY,
            patient_id VARCHAR NOT NULL,
            raised_at TIMESTAMP NOT NULL,
            is_open BOOLEAN NOT NULL,
            alert VARCHAR NOT NULL);
        CREATE TABLE IF NOT EXISTS alert_patients (
            patient_id VARCHAR PRIMARY KEY);
        CREATE TABLE IF NOT EXISTS care_team_members (
            team_id VARCHAR NOT NULL,
            patient_id VARCHAR NOT NULL);
        CREATE TABLE IF NOT EXISTS alert_cursors (
            consumer VARCHAR PRIMARY KEY,
            position BIGINT NOT NULL);
        """;

    private readonly string _connectionString;

    // Held open for the life of the process so the database instance, and its cache, stay loaded between queries.
    private readonly DuckDBConnection _anchor;

    public DuckDbDatabase(IOptions<DuckDbOptions> options)
    {
        var path = System.IO.Path.GetFullPath(options.Value.Path);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(path)!);
        FilePath = path;
        _connectionString = $"Data Source={path}";
        _anchor = new DuckDBConnection(_connectionString);
        _anchor.Open();

        // DuckDB would otherwise keep up to 80% of the machine's memory as its cache, growing with the file. (The value
        // is checked here too, as it is written into the statement.)
        System.ComponentModel.DataAnnotations.Validator.ValidateObject(options.Value, new System.ComponentModel.DataAnnotations.ValidationContext(options.Value), validateAllProperties: true);
        using (var limit = _anchor.CreateCommand())
        {
            limit.CommandText = $"SET memory_limit = '{options.Value.MemoryLimit}'";
            limit.ExecuteNonQuery();
        }

        SeriesCatalog.MigrateReadings(_anchor);
        using (var command = _anchor.CreateCommand())
        {
            command.CommandText = SeriesCatalog.SeriesSchema + Schema;
            command.ExecuteNonQuery();
        }

        SequenceLedger.AddSequenceColumn(_anchor);
        DuckDbRollupStore.CreateSchema(_anchor);
        DuckDbPatientDirectory.CreateSchema(_anchor);
    }

    public string FilePath { get; }

    /// <summary>True when <paramref name="table"/> has <paramref name="column"/>: how an upgrade tells a file's layout.</summary>
    internal static bool HasColumn(DuckDBConnection connection, string table, string column)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT count(*) FROM information_schema.columns WHERE table_name = $1 AND column_name = $2";
        command.Parameters.Add(new DuckDBParameter(table));
        command.Parameters.Add(new DuckDBParameter(column));
        return Convert.ToInt64(command.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture) > 0;
    }

    /// <summary>A new open connection to the database. Connections are not thread-safe: one per thread of work.</summary>
    public DuckDBConnection OpenConnection()
    {
        var connection = new DuckDBConnection(_connectionString);
        connection.Open();
        return connection;
    }

    public void Dispose() => _anchor.Dispose();
}
