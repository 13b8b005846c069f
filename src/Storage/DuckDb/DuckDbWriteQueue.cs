using System.Threading.Channels;
using DuckDB.NET.Data;

namespace Telemetry.Storage.DuckDb;

/// <summary>
/// Group commit for the DuckDB file's small writes: grain state (device bindings, alert state) and alert events. Writes
/// that callers queue at the same moment are applied by one loop in one transaction and made durable by one WAL fsync,
/// rather than one transaction and one fsync each, so a hundred patients' alert changes cost about what one does.
/// </summary>
/// <remarks>
/// A write runs inside the group's transaction. It may refuse before it has written anything (an ETag that does not
/// match): it alone then fails, and the group goes on. If a statement fails, DuckDB aborts the transaction, so the
/// whole group is rolled back and every write in it fails; <see cref="RolledBack"/> tells writers that keep state
/// across writes (the alert store's next position) to forget it.
/// </remarks>
public sealed class DuckDbWriteQueue : IDisposable
{
    private const int Capacity = 10_000;
    private const int MostPerGroup = 1_000;

    private readonly Channel<IPending> _queue = Channel.CreateBounded<IPending>(new BoundedChannelOptions(Capacity)
    {
        SingleReader = true,
        FullMode = BoundedChannelFullMode.Wait,
    });

    private readonly DuckDBConnection _connection;
    private readonly Dictionary<string, DuckDBCommand> _commands = new(StringComparer.Ordinal);
    private readonly Task _loop;
    private long _commits;

    public DuckDbWriteQueue(DuckDbDatabase database)
    {
        _connection = database.OpenConnection();
        _loop = Task.Factory.StartNew(Run, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
    }

    /// <summary>Groups committed so far.</summary>
    public long Commits => Interlocked.Read(ref _commits);

    /// <summary>Raised on the loop when a group was rolled back.</summary>
    public event Action? RolledBack;

    /// <summary>
    /// Runs <paramref name="write"/> in the next group's transaction and completes with its result once that
    /// transaction is committed (durable). Throws what the write threw, or the commit's failure.
    /// </summary>
    public async Task<T> WriteAsync<T>(Func<DuckDBConnection, T> write, CancellationToken cancellationToken = default)
    {
        var pending = new Pending<T>(write);
        try
        {
            await _queue.Writer.WriteAsync(pending, cancellationToken);
        }
        catch (ChannelClosedException exception)
        {
            throw new ObjectDisposedException("The DuckDB file is closed.", exception);
        }

        return await pending.Completion.Task;
    }

    /// <summary>
    /// Inside a write: the command for <paramref name="sql"/> on the loop's connection with <paramref name="values"/>
    /// as its parameters. It is prepared once and kept, its parameters given new values (a changed parameter list would
    /// have it prepared again): DuckDB plans a statement in longer than the write itself takes. Not to be disposed.
    /// </summary>
    public DuckDBCommand Command(string sql, params ReadOnlySpan<object> values)
    {
        if (!_commands.TryGetValue(sql, out var command))
        {
            command = _connection.CreateCommand();
            command.CommandText = sql;
            foreach (var value in values)
            {
                command.Parameters.Add(new DuckDBParameter(value));
            }

            _commands[sql] = command;
            return command;
        }

        for (var i = 0; i < values.Length; i++)
        {
            command.Parameters[i].Value = values[i];
        }

        return command;
    }

    public void Dispose()
    {
        // What is queued is still written: grains write their state as the silo stops.
        _queue.Writer.TryComplete();
        _loop.GetAwaiter().GetResult();
        foreach (var command in _commands.Values)
        {
            command.Dispose();
        }

        _connection.Dispose();
    }

    private void Run()
    {
        var group = new List<IPending>(MostPerGroup);
        var reader = _queue.Reader;
        while (reader.WaitToReadAsync().AsTask().GetAwaiter().GetResult())
        {
            group.Clear();
            while (group.Count < MostPerGroup && reader.TryRead(out var pending))
            {
                group.Add(pending);
            }

            try
            {
                using var transaction = _connection.BeginTransaction();
                foreach (var pending in group)
                {
                    pending.Apply(_connection);
                }

                transaction.Commit();
                Interlocked.Increment(ref _commits);
            }
            catch (Exception exception)
            {
                RolledBack?.Invoke();
                foreach (var pending in group)
                {
                    pending.Fail(exception);
                }

                continue;
            }

            foreach (var pending in group)
            {
                pending.Complete();
            }
        }
    }

    private interface IPending
    {
        /// <summary>Runs the write; a refusal (an exception that is not DuckDB's) is kept for this write alone.</summary>
        void Apply(DuckDBConnection connection);

        void Complete();

        void Fail(Exception exception);
    }

    private sealed class Pending<T>(Func<DuckDBConnection, T> write) : IPending
    {
        private T? _result;
        private Exception? _refused;

        public TaskCompletionSource<T> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public void Apply(DuckDBConnection connection)
        {
            try
            {
                _result = write(connection);
            }
            catch (Exception exception) when (exception is not DuckDBException)
            {
                _refused = exception;
            }
        }

        public void Complete()
        {
            if (_refused is null)
            {
                Completion.TrySetResult(_result!);
            }
            else
            {
                Completion.TrySetException(_refused);
            }
        }

        public void Fail(Exception exception) => Completion.TrySetException(_refused ?? exception);
    }
}
