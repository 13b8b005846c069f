namespace Telemetry.Storage.DuckDb;

/// <summary>
/// Serialised writes that group themselves: a write made while none is under way starts at once, and whatever gathers
/// while one group is written goes in the next group together, so a burst costs a few records (and flushes) of the
/// journal, not one each. A lone write waits for nothing.
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
        bool lead;
        lock (_lock)
        {
            _waiting.Add((request, completion));
            lead = !_writing;
            _writing = true;
        }

        if (lead)
        {
            _ = Task.Run(WriteWaiting, CancellationToken.None);
        }

        return completion.Task.WaitAsync(cancellationToken);
    }

    private void WriteWaiting()
    {
        while (true)
        {
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

            afterAnswered?.Invoke();
        }
    }
}
