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
/// The first file is the database's own (with the alerts, the grain state and the rollups); the second lies beside it.
/// Each holds the tables one commit writes (readings, series, quarantine, the sequence log), and queries read both
/// through the <c>all_*</c> views. DuckDB's own checkpoints are off (its threshold is global to the database); this
/// thread also checkpoints whichever file's WAL grows past the limit for another reason, and, at twice the limit, even
/// the active one (when the commit loop is idle, or the other file's checkpoint keeps failing).
/// </remarks>
internal sealed partial class ReadingsFiles : IDisposable
{
    /// <summary>The tables one commit writes, created in each file.</summary>
    public static readonly string[] Tables = ["series", "readings", "quarantine", "device_sequences", "sequence_folds"];

    private static readonly TimeSpan Tick = TimeSpan.FromMilliseconds(50);

    private readonly File[] _files;
    private readonly long _walLimit;
    private readonly Func<DuckDBConnection> _openConnection;
    private readonly ILogger _logger;
    private readonly AutoResetEvent _wake = new(false);
    private readonly CancellationTokenSource _stopping = new();
    private readonly Thread _checkpointer;
    private volatile int _active;
    private int _checkpoints;
    private int _disposed;

    public ReadingsFiles((string Catalog, string Path) first, (string Catalog, string Path) second, long walLimit, Func<DuckDBConnection> openConnection, ILogger logger)
    {
        _files = [new File(first.Catalog, first.Path + ".wal"), new File(second.Catalog, second.Path + ".wal")];
        _walLimit = walLimit;
        _openConnection = openConnection;
        _logger = logger;
        _checkpointer = new Thread(CheckpointLoop) { IsBackground = true, Name = "DuckDB checkpoints" };
        _checkpointer.Start();
    }

    /// <summary>The catalog (attached database) the next commit writes to.</summary>
    public string Active => _files[_active].Catalog;

    /// <summary>Both catalogs, the database's own first.</summary>
    public IEnumerable<string> Catalogs => _files.Select(file => file.Catalog);

    /// <summary>How many checkpoints this thread has run.</summary>
    public int Checkpoints => Volatile.Read(ref _checkpoints);

    /// <summary>
    /// Called by the commit loop, the only writer of readings, between commits: moves to the other file when the
    /// active one's WAL has passed the limit and the other is checkpointed.
    /// </summary>
    public void BetweenCommits()
    {
        var active = _files[_active];
        if (active.WalBytes() < _walLimit)
        {
            return;
        }

        var other = _files[1 - _active];
        if (Volatile.Read(ref other.Checkpointing) || other.WalBytes() >= _walLimit)
        {
            return;
        }

        _active = 1 - _active;
        _wake.Set();
    }

    private void CheckpointLoop()
    {
        using var connection = OpenOrNull();
        while (!_stopping.IsCancellationRequested)
        {
            _wake.WaitOne(Tick);
            if (connection is null || _stopping.IsCancellationRequested)
            {
                continue;
            }

            for (var i = 0; i < _files.Length; i++)
            {
                var file = _files[i];
                var limit = i == _active ? 2 * _walLimit : _walLimit;
                if (file.WalBytes() >= limit)
                {
                    Checkpoint(connection, file);
                }
            }
        }
    }

    private void Checkpoint(DuckDBConnection connection, File file)
    {
        Volatile.Write(ref file.Checkpointing, true);
        try
        {
            using var command = connection.CreateCommand();
            command.CommandText = $"CHECKPOINT {DuckDbDatabase.Quote(file.Catalog)}";
            command.ExecuteNonQuery();
            Interlocked.Increment(ref _checkpoints);
        }
        catch (Exception exception) when (!_stopping.IsCancellationRequested)
        {
            // The WAL keeps every commit; the next tick tries again.
            LogCheckpointFailed(_logger, exception, file.Catalog);
            _stopping.Token.WaitHandle.WaitOne(TimeSpan.FromSeconds(1));
        }
        catch (Exception)
        {
            // Stopping: DuckDB checkpoints each file when the database closes.
        }
        finally
        {
            Volatile.Write(ref file.Checkpointing, false);
        }
    }

    private DuckDBConnection? OpenOrNull()
    {
        try
        {
            return _openConnection();
        }
        catch (Exception exception)
        {
            LogCheckpointFailed(_logger, exception, "(connection)");
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

    [LoggerMessage(Level = LogLevel.Warning, Message = "Checkpointing the DuckDB file {Catalog} failed; its WAL keeps every commit and it is tried again")]
    private static partial void LogCheckpointFailed(ILogger logger, Exception exception, string catalog);

    private sealed class File(string catalog, string walPath)
    {
        public string Catalog { get; } = catalog;

        public bool Checkpointing;

        public long WalBytes()
        {
            var wal = new FileInfo(walPath);
            return wal.Exists ? wal.Length : 0;
        }
    }
}
