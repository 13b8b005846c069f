namespace Telemetry.Storage.DuckDb;

/// <summary>
/// Serialised writes that group themselves: a write made while none is under way starts at once, and whatever gathers
/// while one group is written goes in the next group together, so a burst costs a few records (and flushes) of the
/// journal, not one each. A lone write waits for nothing: its caller writes it, does the writer's (short) work after it
/// (<c>afterAnswered</c>) and has its answer without a hand-off to another thread; only groups that gathered meanwhile
/// are written in the thread pool, so the next lone write does not wait for a pool thread to let the writer go.
/// </summary>
/// <param name="writeGroup">
/// Writes a group and returns one result per request, in order; throwing fails the whole group (nothing of it may have
/// been stored then).
/// </param>
/// <param name="afterAnswered">Work the writer does once a group's requests are answered, before the next group: short, and never throwing.</param>
internal sealed class WriteGroups<TRequest, TResult>(Func<IReadOnlyList<TRequest>, TResult[]> writeGroup, Action? afterAnswered = null)
{
    private readonly Lock _lock = new();
    private List<(TRequest Request, TaskCompletionSource<TResult> Completion)> _waiting = [];
    private bool _writing;

    public Task<TResult> WriteAsync(TRequest request, CancellationToken cancellationToken = default)
    {
        var completion = new TaskCompletionSource<TResult>(TaskCreationOptions.RunContinuationsAsynchronously);
        List<(TRequest Request, TaskCompletionSource<TResult> Completion)>? group = null;
        lock (_lock)
        {
            _waiting.Add((request, completion));
            if (!_writing)
            {
                _writing = true;
                group = _waiting;
                _waiting = [];
            }
        }

        if (group is not null)
        {
            Write(group);
            AfterAnswered();
            if (!StopWriting())
            {
                _ = Task.Run(WriteWaiting, CancellationToken.None);
            }
        }

        return completion.Task.WaitAsync(cancellationToken);
    }

    /// <summary>The writer, in the pool: the groups that gathered, each with its after-work, until none waits.</summary>
    private void WriteWaiting()
    {
        while (true)
        {
            List<(TRequest Request, TaskCompletionSource<TResult> Completion)> group;
            lock (_lock)
            {
                group = _waiting;
                _waiting = [];
            }

            Write(group);
            AfterAnswered();
            if (StopWriting())
            {
                return;
            }
        }
    }

    private void AfterAnswered()
    {
        try
        {
            afterAnswered?.Invoke();
        }
        catch (Exception)
        {
            // It reports its own failures; were one to escape, the writer would never be let go and every write would wait.
        }
    }

    /// <summary>Lets the writer go when no write waits, and says so; otherwise the writer goes on with them.</summary>
    private bool StopWriting()
    {
        lock (_lock)
        {
            if (_waiting.Count > 0)
            {
                return false;
            }

            _writing = false;
            return true;
        }
    }

    private void Write(List<(TRequest Request, TaskCompletionSource<TResult> Completion)> group)
    {
        try
        {
            var results = writeGroup(group.ConvertAll(waiting => waiting.Request));
            for (var i = 0; i < group.Count; i++)
            {
                group[i].Completion.TrySetResult(results[i]);
            }
        }
        catch (Exception exception)
        {
            foreach (var (_, completion) in group)
            {
                completion.TrySetException(exception);
            }
        }
    }
}
