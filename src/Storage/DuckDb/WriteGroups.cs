namespace Telemetry.Storage.DuckDb;

/// <summary>
/// Serialised writes that group themselves: a write made while none is under way starts at once, and whatever gathers
/// while one group is written goes in the next group together, so a burst costs a few records (and flushes) of the
/// journal, not one each. A lone write waits for nothing: its caller writes it, and has its answer without a hand-off
/// to another thread; the writer's work after it (<c>afterAnswered</c>, and the groups that gathered meanwhile) goes
/// on in the thread pool.
/// </summary>
/// <param name="writeGroup">
/// Writes a group and returns one result per request, in order; throwing fails the whole group (nothing of it may have
/// been stored then).
/// </param>
/// <param name="afterAnswered">Work the writer does once a group's requests are answered, before the next group.</param>
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
            _ = Task.Run(WriteWaiting, CancellationToken.None);
        }

        return completion.Task.WaitAsync(cancellationToken);
    }

    /// <summary>The writer after a group: its after-work, then the groups that gathered, until none waits.</summary>
    private void WriteWaiting()
    {
        while (true)
        {
            afterAnswered?.Invoke();
            List<(TRequest Request, TaskCompletionSource<TResult> Completion)> group;
            lock (_lock)
            {
                if (_waiting.Count == 0)
                {
                    _writing = false;
                    return;
                }

                group = _waiting;
                _waiting = [];
            }

            Write(group);
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
