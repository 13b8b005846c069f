using System.Diagnostics.Metrics;
using System.Globalization;
using DuckDB.NET.Data;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Telemetry.Storage.DuckDb;

/// <summary>
/// The embedded DuckDB file, with the two files the raw readings alternate between (see <see cref="ReadingsFiles"/>):
/// creates the schema once and hands out connections to all three.
/// </summary>
public sealed partial class DuckDbDatabase : IDisposable
{
    /// <summary>
    /// The tables a commit of readings writes, in each of the two readings files (see <see cref="ReadingsFiles"/>), and
    /// in the database file for the readings stored before those existed.
    /// </summary>
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
        CREATE TABLE IF NOT EXISTS commit_minutes (
            commit_id BIGINT NOT NULL,
            patient_id VARCHAR NOT NULL,
            kind UTINYINT NOT NULL,
            minute BIGINT NOT NULL);
        """;

    private const string Schema = """
        CREATE TABLE IF NOT EXISTS grain_states (
            state_key VARCHAR PRIMARY KEY,
            etag VARCHAR NOT NULL,
            data BLOB NOT NULL);
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
        CREATE TABLE IF NOT EXISTS grain_progress (
            id UTINYINT PRIMARY KEY,
            applied_through BIGINT NOT NULL);
        CREATE TABLE IF NOT EXISTS alert_retention (
            id UTINYINT PRIMARY KEY,
            deleted_before TIMESTAMP NOT NULL);
        """;

    /// <summary>DuckDB's own memory by what holds it (<c>duckdb_memory()</c>'s tags: its cache of the files' blocks, indexes, hash tables, ...).</summary>
    public const string MemorySize = "telemetry.duckdb.memory.size";

    private readonly string _connectionString;

    // Held open for the life of the process so the database instance, and its cache, stay loaded between queries.
    private readonly DuckDBConnection _anchor;

    // Present while a server has the database open; left behind by one that did not stop cleanly (see StoppedUncleanly).
    private readonly string _runningMarker;
    private readonly string _openedLine;
    private const string RecoverAsOfField = "recover as of ";
    private const string RecoverThroughField = "recover through commit ";
    private volatile bool _recoveryPending;

    public DuckDbDatabase(IOptions<DuckDbOptions> options, ILogger<DuckDbDatabase>? logger = null, IMeterFactory? meterFactory = null)
    {
        var path = System.IO.Path.GetFullPath(options.Value.Path);
        var log = Logger = logger ?? (ILogger)Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;
        var folder = System.IO.Path.GetDirectoryName(path)!;
        Core.Storage.PrivateFolder.Create(folder);
        WarnIfOpenToOthers(folder, log);
        FilePath = path;
        ReadingsPaths = [.. ReadingsCatalogs.Select((_, i) => System.IO.Path.ChangeExtension(path, null) + $".readings-{i + 1}.duckdb")];
        _connectionString = $"Data Source={path}";
        _anchor = new DuckDBConnection(_connectionString);
        try
        {
            _anchor.Open();
        }
        catch (DuckDBException exception)
        {
            // Most often another server using the same folder (DuckDB's lock names its process): the start is refused
            // with the setting to change, not DuckDB's stack.
            _anchor.Dispose();
            throw new IOException(
                $"{DuckDbOptions.Section}:Path: the database {path} could not be opened: {exception.Message.Trim()} " +
                "If another Telemetry server uses this data folder, stop it, or give this server a folder of its own.", exception);
        }

        try
        {
            Readings = Open(options.Value, log, meterFactory);
        }
        catch
        {
            _anchor.Dispose();
            throw;
        }

        try
        {
            StateWrites = new DuckDbStateWrites(this, options.Value.JournalDelay, log);
        }
        catch
        {
            Readings.Dispose();
            _anchor.Dispose();
            throw;
        }

        meterFactory?.Create(ReadingsFiles.MeterName).CreateObservableGauge(
            MemorySize, ReadMemory, "By", "Memory DuckDB holds, by what holds it (its cache of the files' blocks, indexes, ...); bounded by MemoryLimit.");

        _runningMarker = System.IO.Path.ChangeExtension(path, null) + ".running";
        StoppedUncleanly = _recoveryPending = File.Exists(_runningMarker);
        var now = DateTimeOffset.UtcNow;
        if (StoppedUncleanly)
        {
            var (asOf, through) = ReadRecoverAsOf(_runningMarker);
            RecoverAsOf = asOf ?? now;
            RecoverThroughCommitId = through ?? LastStoredCommitId();
        }

        _openedLine = $"opened {now:O} by process {Environment.ProcessId}\n";
        File.WriteAllText(_runningMarker, _openedLine + (RecoverAsOf is { } found ? $"{RecoverAsOfField}{found:O}\n{RecoverThroughField}{RecoverThroughCommitId}\n" : ""));
    }

    /// <summary>
    /// After an unclean stop, the last commit stored before the start that found it: what the stop left open is judged
    /// by the readings committed by then, not by those a device sent as the server came back (before the recovery's
    /// query runs), which would put the newest day days past the stop's after a long outage.
    /// </summary>
    public long? RecoverThroughCommitId { get; }

    private long LastStoredCommitId()
    {
        using var connection = OpenConnection();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT coalesce(max(commit_id), 0) FROM all_readings";
        return Convert.ToInt64(command.ExecuteScalar(), CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// After an unclean stop, the time its recovery looks back from (see <see cref="DuckDbCommitLog.MinutesOpenAtStopAsync"/>):
    /// when a start first found the stop. Kept in the marker until the recovery is done, so that a start after one that
    /// failed looks at the days of the stop, not at those of the readings stored since.
    /// </summary>
    public DateTimeOffset? RecoverAsOf { get; }

    private static (DateTimeOffset? AsOf, long? Through) ReadRecoverAsOf(string marker)
    {
        DateTimeOffset? found = null;
        long? through = null;
        try
        {
            foreach (var line in File.ReadLines(marker))
            {
                if (line.StartsWith(RecoverAsOfField, StringComparison.Ordinal)
                    && DateTimeOffset.TryParse(line.AsSpan(RecoverAsOfField.Length), CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out var asOf))
                {
                    found = asOf;
                }
                else if (line.StartsWith(RecoverThroughField, StringComparison.Ordinal)
                    && long.TryParse(line.AsSpan(RecoverThroughField.Length), NumberStyles.None, CultureInfo.InvariantCulture, out var commit))
                {
                    through = commit;
                }
            }

            return (found, through);
        }
        catch (IOException)
        {
            // Unreadable: the stop is taken as just found.
        }

        return (null, null);
    }

    /// <summary>
    /// Whether the server that had the database open before did not stop cleanly (it was killed, or the machine went
    /// down): the marker a server leaves beside the file while it has it open (<c>telemetry.running</c>) was still there.
    /// Its grains' open windows were then lost with its memory (see <see cref="DuckDbCommitLog.MinutesOpenAtStopAsync"/>).
    /// </summary>
    public bool StoppedUncleanly { get; }

    /// <summary>Where the database's own parts (the sequence ledger, say) log what an operator should know.</summary>
    internal ILogger Logger { get; }

    /// <summary>
    /// Warns when other users (its group's, or anyone) may enter the database's folder (one made before, by its operator
    /// or an older version): DuckDB makes its files with the umask's modes, readable by anyone in a folder they may enter.
    /// </summary>
    private static void WarnIfOpenToOthers(string folder, ILogger logger)
    {
        if (OperatingSystem.IsWindows())
        {
            return;
        }

        var mode = File.GetUnixFileMode(folder);
        if ((mode & (UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute)) != 0)
        {
            LogFolderOpenToOthers(logger, folder, Convert.ToString((int)mode, 8));
        }
    }

    [LoggerMessage(EventId = 3003, Level = LogLevel.Warning,
        Message = "The database's folder {Folder} is open to other users (mode {Mode}), and patients' readings are in it: make it its owner's alone (chmod 700)")]
    private static partial void LogFolderOpenToOthers(ILogger logger, string folder, string mode);

    /// <summary>Records that what an unclean stop left to recover is recovered: a clean stop from here on removes the marker.</summary>
    public void Recovered()
    {
        _recoveryPending = false;

        // A stop from here on that is not clean is one of its own, found as of the start after it: the time this run
        // found the last one goes.
        try
        {
            File.WriteAllText(_runningMarker, _openedLine);
        }
        catch (IOException)
        {
            // The next unclean stop's recovery then looks at this one's days too (see DuckDbCommitLog.MinutesOpenAtStopAsync).
        }
    }

    /// <summary>Records that this stop leaves windows to recover (see <see cref="ICommitLog.OpenWindowsLeft"/>): the marker stays, as after an unclean stop.</summary>
    public void RecoveryNeeded() => _recoveryPending = true;

    private ReadingsFiles Open(DuckDbOptions options, ILogger logger, IMeterFactory? meterFactory)
    {
        // DuckDB would otherwise keep up to 80% of the machine's memory as its cache, growing with the file. Its own
        // checkpoints wait for four times the WAL limit, a fallback: ReadingsFiles checkpoints each file when no commit
        // needs it. DuckDB's executor takes Threads when it is set (see DuckDbOptions). (The values are checked here too,
        // as they are written into the statements.)
        System.ComponentModel.DataAnnotations.Validator.ValidateObject(options, new System.ComponentModel.DataAnnotations.ValidationContext(options), validateAllProperties: true);
        Execute($"SET memory_limit = '{options.MemoryLimit}'; SET GLOBAL checkpoint_threshold = '{4 * options.CheckpointWalBytes}B';");
        if (options.Threads > 0)
        {
            Execute($"SET GLOBAL threads = {options.Threads};");
        }

        // The file's own tables first (upgrading a file from before series ids or sequence numbers), then the two
        // readings files, new or not, and the views that read all three.
        SeriesCatalog.MigrateReadings(_anchor);
        Execute(ReadingsSchema + Schema + PairSchema);
        SequenceLedger.AddSequenceColumn(_anchor);
        DuckDbStateWrites.MoveToStateKeys(_anchor);

        var catalog = Convert.ToString(Scalar("SELECT current_database()"), System.Globalization.CultureInfo.InvariantCulture)!;
        if (ReadingsCatalogs.Contains(catalog))
        {
            throw new InvalidOperationException($"The database file may not be named {catalog}: that name is a readings file's.");
        }

        AttachReadingsFiles(catalog);
        string[] catalogs = [catalog, .. ReadingsCatalogs];
        Execute(string.Concat(ReadingsFiles.Tables.Select(table =>
            $"CREATE OR REPLACE VIEW all_{table} AS {string.Join(" UNION ALL ", catalogs.Select(from => $"SELECT * FROM {Quote(from)}.main.{table}"))};")));

        DuckDbRollupStore.CreateSchema(_anchor);
        DuckDbPatientDirectory.CreateSchema(_anchor);
        return new ReadingsFiles(
            (catalog, FilePath), [.. ReadingsCatalogs.Zip(ReadingsPaths)], options.CheckpointWalBytes, OpenConnection, logger, meterFactory);
    }

    /// <summary>The database and its readings files record the id of their set, so that none is opened with another's.</summary>
    private const string PairSchema = "CREATE TABLE IF NOT EXISTS readings_pair (id UUID NOT NULL);";

    /// <summary>
    /// Attaches the two readings files, creating them on the first start. Once paired, the database refuses to open
    /// without its own readings files: starting with a missing or foreign one would lose the readings it holds from
    /// every query, and store again the batches it holds when devices resend them. The readings files record the id
    /// before the database does, so a start stopped part way finds them empty and pairs with them.
    /// </summary>
    private void AttachReadingsFiles(string catalog)
    {
        // The first form of this layout (one readings file beside the database, which took readings too) was never
        // released; its file is not read, so a database written that way is refused rather than opened without it.
        var firstForm = System.IO.Path.ChangeExtension(FilePath, null) + ".readings.duckdb";
        if (File.Exists(firstForm))
        {
            throw new InvalidOperationException(
                $"{firstForm} holds readings in a layout this server does not read (a development build's). Start with a new " +
                "data directory, or move the file away if its readings are not needed.");
        }

        var paired = Scalar("SELECT min(id)::VARCHAR FROM readings_pair") as string;
        var ids = new string?[ReadingsCatalogs.Length];
        for (var i = 0; i < ReadingsCatalogs.Length; i++)
        {
            var (file, path) = (ReadingsCatalogs[i], ReadingsPaths[i]);
            if (paired is not null && !File.Exists(path))
            {
                throw new InvalidOperationException(
                    $"The database {FilePath} keeps raw readings also in {path}, which is missing. Restore it beside the database " +
                    "(the files are backed up together): without it, its readings would be missing from every query.");
            }

            Execute($"ATTACH IF NOT EXISTS {Literal(path)} AS {Quote(file)}; USE {Quote(file)};");
            try
            {
                Execute(ReadingsSchema + PairSchema);
                ids[i] = Scalar("SELECT min(id)::VARCHAR FROM readings_pair") as string;
                if (paired is not null && !string.Equals(ids[i], paired, StringComparison.Ordinal))
                {
                    throw new InvalidOperationException(
                        $"{path} is not the readings file {FilePath} was paired with (it is another database's, or a new one). " +
                        "Put back the one the database was backed up with.");
                }

                if (paired is null && ids[i] is not null
                    && Convert.ToInt64(Scalar("SELECT " + string.Join(" + ", ReadingsFiles.Tables.Select(table => $"(SELECT count(*) FROM {table})"))), System.Globalization.CultureInfo.InvariantCulture) > 0)
                {
                    throw new InvalidOperationException(
                        $"{path} holds readings of another database than {FilePath}. Move it away, or put back the database it belongs with.");
                }
            }
            finally
            {
                Execute($"USE {Quote(catalog)}");
            }
        }

        if (paired is null)
        {
            var id = ids.FirstOrDefault(id => id is not null) ?? Guid.NewGuid().ToString();
            for (var i = 0; i < ReadingsCatalogs.Length; i++)
            {
                if (ids[i] != id)
                {
                    Execute($"DELETE FROM {Quote(ReadingsCatalogs[i])}.main.readings_pair; INSERT INTO {Quote(ReadingsCatalogs[i])}.main.readings_pair VALUES ('{id}');");
                }
            }

            Execute($"INSERT INTO readings_pair VALUES ('{id}')");
        }
    }

    /// <summary>The catalog names of the two readings files, attached to every connection.</summary>
    private static readonly string[] ReadingsCatalogs = ["readings_1", "readings_2"];

    public string FilePath { get; }

    /// <summary>The two files the readings alternate between (see <see cref="ReadingsFiles"/>), beside <see cref="FilePath"/>.</summary>
    public IReadOnlyList<string> ReadingsPaths { get; }

    /// <summary>Which of the two files the next commit of readings writes to, and the checkpoints of all three.</summary>
    internal ReadingsFiles Readings { get; }

    /// <summary>The one writer of grain state and the alert log, shared by every store over this file, with its journal beside the file.</summary>
    internal DuckDbStateWrites StateWrites { get; }

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

    /// <summary>DuckDB's memory by tag, read when the metrics are scraped; nothing once the database is closed.</summary>
    private IEnumerable<Measurement<long>> ReadMemory()
    {
        var measurements = new List<Measurement<long>>();
        try
        {
            using var connection = OpenConnection();
            using var command = connection.CreateCommand();
            command.CommandText = "SELECT tag, memory_usage_bytes FROM duckdb_memory() WHERE memory_usage_bytes > 0";
            using var reader = command.ExecuteReader();
            while (reader.Read())
            {
                measurements.Add(new(reader.GetInt64(1), new KeyValuePair<string, object?>("tag", reader.GetString(0).ToLowerInvariant())));
            }
        }
        catch (Exception exception) when (exception is DuckDBException or ObjectDisposedException or InvalidOperationException)
        {
            // Closed (or closing) with the server: a scrape then has no figure to give.
        }

        return measurements;
    }

    public void Dispose()
    {
        StateWrites.Dispose();
        Readings.Dispose();
        _anchor.Dispose();

        // A clean stop, everything written (the grains, deactivated before, wrote their open windows): unless an unclean
        // stop's recovery has not finished, in which case the next start does it again.
        if (!_recoveryPending)
        {
            File.Delete(_runningMarker);
        }
    }
}
