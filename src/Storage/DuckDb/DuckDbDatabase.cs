using DuckDB.NET.Data;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Telemetry.Storage.DuckDb;

/// <summary>The embedded DuckDB file: creates the schema once and hands out connections to it.</summary>
public sealed class DuckDbDatabase : IDisposable
{
    /// <summary>The tables a commit of readings writes, in each of the two readings files (see <see cref="ReadingsFiles"/>).</summary>
    private const string ReadingsSchema = SeriesCatalog.SeriesSchema + """
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
        """;

    private const string Schema = """
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

    public DuckDbDatabase(IOptions<DuckDbOptions> options, ILogger<DuckDbDatabase>? logger = null)
    {
        var path = System.IO.Path.GetFullPath(options.Value.Path);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(path)!);
        FilePath = path;
        SecondReadingsPath = System.IO.Path.ChangeExtension(path, null) + ".readings.duckdb";
        _connectionString = $"Data Source={path}";
        _anchor = new DuckDBConnection(_connectionString);
        _anchor.Open();

        // DuckDB would otherwise keep up to 80% of the machine's memory as its cache, growing with the file. Its own
        // checkpoints are off: ReadingsFiles checkpoints each file when no commit needs it. (The values are checked here
        // too, as they are written into the statements.)
        System.ComponentModel.DataAnnotations.Validator.ValidateObject(options.Value, new System.ComponentModel.DataAnnotations.ValidationContext(options.Value), validateAllProperties: true);
        Execute($"SET memory_limit = '{options.Value.MemoryLimit}'; SET GLOBAL checkpoint_threshold = '1TB';");

        // The file's own tables first (upgrading a file from before series ids or sequence numbers), then the second
        // readings file, new or not, and the views that read both.
        SeriesCatalog.MigrateReadings(_anchor);
        Execute(ReadingsSchema + Schema);
        SequenceLedger.AddSequenceColumn(_anchor);

        var catalog = Convert.ToString(Scalar("SELECT current_database()"), System.Globalization.CultureInfo.InvariantCulture)!;
        Execute($"ATTACH IF NOT EXISTS {Literal(SecondReadingsPath)} AS {Quote(SecondReadingsCatalog)}; USE {Quote(SecondReadingsCatalog)};");
        try
        {
            Execute(ReadingsSchema);
        }
        finally
        {
            Execute($"USE {Quote(catalog)}");
        }

        Execute(string.Concat(ReadingsFiles.Tables.Select(table =>
            $"CREATE OR REPLACE VIEW all_{table} AS SELECT * FROM {Quote(catalog)}.main.{table} UNION ALL SELECT * FROM {Quote(SecondReadingsCatalog)}.main.{table};")));

        DuckDbRollupStore.CreateSchema(_anchor);
        DuckDbPatientDirectory.CreateSchema(_anchor);
        Readings = new ReadingsFiles(
            (catalog, path), (SecondReadingsCatalog, SecondReadingsPath), options.Value.CheckpointWalBytes, OpenConnection,
            logger ?? (ILogger)Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance);
    }

    /// <summary>The catalog name of the second readings file, attached to every connection.</summary>
    private const string SecondReadingsCatalog = "readings_b";

    public string FilePath { get; }

    /// <summary>The second file the readings alternate with (see <see cref="ReadingsFiles"/>), beside <see cref="FilePath"/>.</summary>
    public string SecondReadingsPath { get; }

    /// <summary>Which of the two files the next commit of readings writes to, and their checkpoints.</summary>
    internal ReadingsFiles Readings { get; }

    /// <summary>An identifier in double quotes, for a statement.</summary>
    internal static string Quote(string identifier) => $"\"{identifier.Replace("\"", "\"\"", StringComparison.Ordinal)}\"";

    private static string Literal(string text) => $"'{text.Replace("'", "''", StringComparison.Ordinal)}'";

    private void Execute(string sql)
    {
        using var command = _anchor.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    private object? Scalar(string sql)
    {
        using var command = _anchor.CreateCommand();
        command.CommandText = sql;
        return command.ExecuteScalar();
    }

    /// <summary>True when <paramref name="table"/> has <paramref name="column"/>: how an upgrade tells a file's layout.</summary>
    internal static bool HasColumn(DuckDBConnection connection, string table, string column)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT count(*) FROM information_schema.columns WHERE table_catalog = current_database() AND table_name = $1 AND column_name = $2";
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

    public void Dispose()
    {
        Readings.Dispose();
        _anchor.Dispose();
    }
}
