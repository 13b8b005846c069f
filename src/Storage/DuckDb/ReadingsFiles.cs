using System.Diagnostics;
using System.Diagnostics.Metrics;
using DuckDB.NET.Data;
using Microsoft.Extensions.Logging;

namespace Telemetry.Storage.DuckDb;

/// <summary>
/// The two files the raw readings alternate between, so that no commit waits for a checkpoint. DuckDB checkpoints a
/// file (writes its WAL into the file) under a lock that holds every commit to that file for the whole checkpoint,
/// 70-130 ms at 16 MB of WAL on a 2-core machine; a commit to another attached file goes on meanwhile. So the commit
/// loop writes each commit, whole, to the active file; when that file's WAL passes the limit, the next commit goes to
/// the other file and a background thread checkpoints the one left.
/// </summary>
/// <remarks>
/// Both readings files lie beside the database file, which keeps the alerts, the grain state and the rollups, and so
/// is checkpointed only as those grow, holding no commit of readings. Each of the three holds the tables one commit
/// writes (readings, series, quarantine, the sequence log): the database's own hold what was stored before the
/// readings files existed, and are read and trimmed by retention but not written. Queries read all three through the
/// <c>all_*</c> views. DuckDB's own checkpoints wait for four times the limit (its threshold is global to the
/// database, so it is a fallback); this thread checkpoints whichever file's WAL grows past the limit and is not the
/// active one, and, at twice the limit, even the active one (when the commit loop is idle, or the other file's
/// checkpoint keeps failing).
/// </remarks>
internal sealed partial class ReadingsFiles : IDisposable
{
    /// <summary>The tables one commit writes, created in each file.</summary>
    public static readonly string[] Tables = ["series", "readings", "quarantine", "device_sequences", "sequence_folds", "commit_minutes"];

    public const string MeterName = "Telemetry";
    public const string CheckpointDuration = "telemetry.duckdb.checkpoint.duration";
    public const string CheckpointFailures = "telemetry.duckdb.checkpoint.failures";
    public const string WalSize = "telemetry.duckdb.wal.size";

    private static readonly TimeSpan Tick = TimeSpan.FromMilliseconds(50);
    private static readonly TimeSpan MaxRetryDelay = TimeSpan.FromSeconds(2);

    private readonly File[] _files;
    private readonly long _walLimit;
    private readonly Func<DuckDBConnection> _openConnection;
    private readonly ILogger _logger;
    private readonly Lock _lock = new();
    private readonly AutoResetEvent _wake = new(false);
    private readonly CancellationTokenSource _stopping = new();
    private readonly Thread _checkpointer;
    private volatile int _active;
    private readonly Histogram<double>? _checkpointDuration;
    private readonly Counter<long>? _checkpointFailures;
    private int _checkpoints;
    private int _disposed;

    public ReadingsFiles(
        (string Catalog, string Path) database, (string Catalog, string Path)[] alternating, long walLimit, Func<DuckDBConnection> openConnection, ILogger logger, IMeterFactory? meterFactory)
    {
        if (alternating.Length != 2)
        {
            throw new ArgumentException("The readings alternate between two files.", nameof(alternating));
        }

        _files = [new File(database.Catalog, database.Path), .. alternating.Select(file => new File(file.Catalog, file.Path))];
        _active = 1;
        _walLimit = walLimit;
        _openConnection = openConnection;
        _logger = logger;
        if (meterFactory is not null)
        {
            var meter = meterFactory.Create(MeterName);
            _checkpointDuration = meter.CreateHistogram(CheckpointDuration, "s", "DuckDB checkpoints of the database's files, by file.", tags: null,
                advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] });
            _checkpointFailures = meter.CreateCounter<long>(CheckpointFailures, "{checkpoint}", "DuckDB checkpoints refused or failed, by file; each is tried again.");
            meter.CreateObservableGauge(WalSize, () => _files.Select(file => new Measurement<long>(file.WalBytes(), file.Tag)), "By", "Size of each database file's write-ahead log.");
        }

        _checkpointer = new Thread(CheckpointLoop) { IsBackground = true, Name = "DuckDB checkpoints" };
        _checkpointer.Start();
    }

    /// <summary>The catalog (attached database) the next commit writes to.</summary>
    public string Active => _files[_active].Catalog;

    /// <summary>Every catalog holding readings, the database's own first.</summary>
    public IEnumerable<string> Catalogs => _files.Select(file => file.Catalog);

    /// <summary>How many checkpoints this thread has run.</summary>
    public int Checkpoints => Volatile.Read(ref _checkpoints);

    /// <summary>
    /// Called between commits by the commit loop (the one writer of new readings): moves to the other file when the
    /// active one's WAL has passed the limit and the other is checkpointed.
    /// </summary>
    public void BetweenCommits()
    {
        lock (_lock)
        {
            var active = _files[_active];
            if (active.WalBytes() < _walLimit)
            {
                return;
            }

            var other = _files[Other];
            if (other.Checkpointing || other.WalBytes() >= _walLimit)
            {
                return;
            }

            _active = Other;
        }

        _wake.Set();
    }

    /// <summary>The readings file that is not active.</summary>
    private int Other => _active == 1 ? 2 : 1;

    private void CheckpointLoop()
    {
        DuckDBConnection? connection = null;
        var connectionFailures = 0;
        try
        {
            while (!_stopping.IsCancellationRequested)
            {
                _wake.WaitOne(Tick);
                connection ??= OpenOrNull(ref connectionFailures);
                if (_stopping.IsCancellationRequested || connection is null)
                {
                    continue;
                }

                foreach (var file in _files)
                {
                    if (Claim(file))
                    {
                        Checkpoint(connection, file);
                    }
                }
            }
        }
        finally
        {
            connection?.Dispose();
        }
    }

    /// <summary>
    /// True, and the file marked as being checkpointed, when its WAL is over the limit and it is not the active file
    /// (or, the commit loop idle or the other file's checkpoint failing, over twice the limit).
    /// </summary>
    private bool Claim(File file)
    {
        if (Stopwatch.GetTimestamp() < file.RetryAt)
        {
            return false;
        }

        lock (_lock)
        {
            var limit = file == _files[_active] ? 2 * _walLimit : _walLimit;
            file.Checkpointing = file.WalBytes() >= limit;
            return file.Checkpointing;
        }
    }

    private void Checkpoint(DuckDBConnection connection, File file)
    {
        var started = Stopwatch.GetTimestamp();
        try
        {
            using var command = connection.CreateCommand();
            command.CommandText = $"CHECKPOINT {DuckDbDatabase.Quote(file.Catalog)}";
            command.ExecuteNonQuery();
            _checkpointDuration?.Record(Stopwatch.GetElapsedTime(started).TotalSeconds, file.Tag);
            Interlocked.Increment(ref _checkpoints);
            file.Failures = 0;
            file.RetryAt = 0;
        }
        catch (Exception exception) when (!_stopping.IsCancellationRequested)
        {
            // DuckDB refuses a checkpoint while another transaction holds the file's checkpoint lock (an open UPDATE):
            // the WAL keeps every commit, and the checkpoint is tried again, at once on the next tick, then less and
            // less often (up to MaxRetryDelay) should it go on failing, as on a full disk. Past four times the limit,
            // DuckDB's own checkpoint on commit takes over.
            _checkpointFailures?.Add(1, file.Tag);
            var delay = Math.Min(Tick.TotalMilliseconds * Math.Pow(2, Math.Min(file.Failures, 10)), MaxRetryDelay.TotalMilliseconds);
            file.RetryAt = Stopwatch.GetTimestamp() + (long)(delay * Stopwatch.Frequency / 1000);
            if (file.Failures++ % 100 == 0)
            {
                LogCheckpointFailed(_logger, exception, file.Catalog, file.Failures, file.WalBytes());
            }
        }
        catch (Exception)
        {
            // Stopping: DuckDB checkpoints each file when the database closes.
        }
        finally
        {
            lock (_lock)
            {
                file.Checkpointing = false;
            }
        }
    }

    private DuckDBConnection? OpenOrNull(ref int failures)
    {
        try
        {
            var connection = _openConnection();
            failures = 0;
            return connection;
        }
        catch (Exception exception)
        {
            // Tried again on the next tick.
            if (failures++ % 100 == 0)
            {
                LogConnectionFailed(_logger, exception, failures);
            }

            return null;
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _stopping.Cancel();
        _wake.Set();
        _checkpointer.Join();
        _wake.Dispose();
        _stopping.Dispose();
    }

    [LoggerMessage(EventId = 3801, Level = LogLevel.Warning, Message = "The DuckDB checkpoint thread could not open a connection ({Failures} times in a row); it tries again")]
    private static partial void LogConnectionFailed(ILogger logger, Exception exception, int failures);

    [LoggerMessage(EventId = 3802, Level = LogLevel.Warning, Message = "Checkpointing the DuckDB file {Catalog} failed ({Failures} times in a row, WAL {WalBytes} bytes); the WAL keeps every commit, and it is tried again")]
    private static partial void LogCheckpointFailed(ILogger logger, Exception exception, string catalog, int failures, long walBytes);

    private sealed class File(string catalog, string path)
    {
        private readonly string _walPath = path + ".wal";

        public string Catalog { get; } = catalog;

        /// <summary>The file's name, as the metrics' <c>file</c> tag.</summary>
        public KeyValuePair<string, object?> Tag { get; } = new("file", System.IO.Path.GetFileName(path));

        /// <summary>Set while the checkpoint thread works on the file (under the lock): the commit loop does not move to it.</summary>
        public bool Checkpointing { get; set; }

        /// <summary>Failed checkpoints in a row (the checkpoint thread's alone).</summary>
        public int Failures { get; set; }

        /// <summary>When, after failures, the next checkpoint may be tried (a <see cref="Stopwatch"/> timestamp).</summary>
        public long RetryAt { get; set; }

        public long WalBytes()
        {
            var wal = new FileInfo(_walPath);
            return wal.Exists ? wal.Length : 0;
        }
    }
}
