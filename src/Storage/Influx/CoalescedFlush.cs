namespace Telemetry.Storage.Influx;

/// <summary>
/// Runs a flush for callers that each need one begun after they asked, sharing it among them: at most one runs, and
/// whoever asks while it runs waits for the next, which begins once it ends and serves all of them. A burst of callers
/// (grains activating by the thousand) costs the server two flushes, not one each.
/// </summary>
internal sealed class CoalescedFlush(Func<CancellationToken, Task> flush)
{
    private readonly Lock _lock = new();

    // Who waits for the flush running now, and who for the one to begin after it; both only while one runs.
    private TaskCompletionSource? _current;
    private TaskCompletionSource? _next;

    /// <summary>Completes once a flush begun after this call has ended (failing as that flush failed).</summary>
    public Task FlushAsync()
    {
        lock (_lock)
        {
            if (_current is not null)
            {
                return (_next ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
            }

            _current = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _ = Task.Run(RunAsync);
            return _current.Task;
        }
    }

    private async Task RunAsync()
    {
        while (true)
        {
            TaskCompletionSource waiting;
            lock (_lock)
            {
                waiting = _current!;
            }

            try
            {
                await flush(CancellationToken.None);
                waiting.SetResult();
            }
            catch (Exception exception)
            {
                waiting.SetException(exception);
            }

            lock (_lock)
            {
                _current = _next;
                _next = null;
                if (_current is null)
                {
                    return;
                }
            }
        }
    }
}
