namespace Telemetry.Storage.DuckDb;

/// <summary>
/// Reads rows by key so that requests of the same kind (<typeparamref name="TGroup"/>) that arrive together are answered
/// by one query: a DuckDB statement has a fixed cost of a few hundred microseconds however few rows it returns, and some
/// must scan much more than the rows they return. Grains ask for such rows when they activate: after a start, when a
/// fleet comes back, when devices of many new patients begin to send. The first request is read at once; those that
/// arrive while it runs go together in the next query (up to <c>maxKeysPerRead</c> keys each). When a query for several
/// keys fails, each is read alone, so one key's failure is not every key's. A key the query does not return is answered
/// with <c>missing</c>.
/// </summary>
internal class CoalescedReads<TGroup, TResult>(
    Func<IReadOnlyList<string>, TGroup, IReadOnlyDictionary<string, TResult>> read, TResult missing, int maxKeysPerRead)
    where TGroup : notnull
{
    private readonly Lock _lock = new();

    // Requests not yet read, by group; a group is in _reading while a query for it runs or is about to.
    private readonly Dictionary<TGroup, List<Request>> _waiting = [];
    private readonly HashSet<TGroup> _reading = [];

    public Task<TResult> ReadAsync(string key, TGroup group, CancellationToken cancellationToken)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return Task.FromCanceled<TResult>(cancellationToken);
        }

        var request = new Request(key);
        bool first;
        lock (_lock)
        {
            if (!_waiting.TryGetValue(group, out var requests))
            {
                _waiting[group] = requests = [];
            }

            requests.Add(request);
            first = _reading.Add(group);
        }

        if (first)
        {
            _ = Task.Run(() => ReadWaiting(group), CancellationToken.None);
        }

        // A caller that gives up stops waiting, and a request given up before its query is left out of it.
        request.StopWaitingOn(cancellationToken);
        return request.Completion.Task;
    }

    /// <summary>Reads the group's waiting requests, a query at a time, until none is left.</summary>
    private void ReadWaiting(TGroup group)
    {
        List<Request> taken = [];
        List<string> keys;
        try
        {
            while (true)
            {
                lock (_lock)
                {
                    if (!_waiting.Remove(group, out var waiting))
                    {
                        _reading.Remove(group);
                        return;
                    }

                    (taken, keys) = Take(waiting, out var rest);
                    if (rest.Count > 0)
                    {
                        _waiting[group] = rest;
                    }
                }

                if (keys.Count > 0 && !TryRead(keys, taken, group) && keys.Count > 1)
                {
                    // A query for several failed: each key alone, so that only those whose own read fails fail.
                    foreach (var key in keys)
                    {
                        TryRead([key], taken, group);
                    }
                }
            }
        }
        catch (Exception exception)
        {
            // Not a query's failure (those go to their requests): whatever waits fails, and the group starts afresh.
            List<Request>? waiting;
            lock (_lock)
            {
                _waiting.Remove(group, out waiting);
                _reading.Remove(group);
            }

            foreach (var request in taken.Concat(waiting ?? []))
            {
                request.Completion.TrySetException(exception);
            }
        }
    }

    /// <summary>Reads <paramref name="keys"/> and answers their requests among <paramref name="requests"/>; false when the query failed.</summary>
    private bool TryRead(List<string> keys, List<Request> requests, TGroup group)
    {
        IReadOnlyDictionary<string, TResult> rows;
        try
        {
            rows = read(keys, group);
        }
        catch (Exception exception)
        {
            if (keys.Count == 1)
            {
                foreach (var request in requests.Where(request => request.Key == keys[0]))
                {
                    request.Completion.TrySetException(exception);
                }
            }

            return false;
        }

        foreach (var request in requests)
        {
            if (keys.Count > 1 || request.Key == keys[0])
            {
                request.Completion.TrySetResult(rows.TryGetValue(request.Key, out var row) ? row : missing);
            }
        }

        return true;
    }

    /// <summary>
    /// The requests of the first <c>maxKeysPerRead</c> keys still waited for, and those keys (each once); the others'
    /// requests go to <paramref name="rest"/>. Requests given up are dropped.
    /// </summary>
    private (List<Request> Taken, List<string> Keys) Take(List<Request> requests, out List<Request> rest)
    {
        rest = [];
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var keys = new List<string>();
        var taken = new List<Request>(Math.Min(requests.Count, maxKeysPerRead));
        foreach (var request in requests)
        {
            if (request.Completion.Task.IsCompleted)
            {
                continue;
            }

            if (seen.Contains(request.Key) || seen.Count < maxKeysPerRead)
            {
                if (seen.Add(request.Key))
                {
                    keys.Add(request.Key);
                }

                taken.Add(request);
            }
            else
            {
                rest.Add(request);
            }
        }

        return (taken, keys);
    }

    private sealed class Request(string key)
    {
        public string Key { get; } = key;

        public TaskCompletionSource<TResult> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>Ends the caller's wait (the request is then left out of the next query) when the token is cancelled.</summary>
        public void StopWaitingOn(CancellationToken cancellationToken)
        {
            if (cancellationToken.CanBeCanceled)
            {
                var registration = cancellationToken.UnsafeRegister(static (state, token) => ((Request)state!).Completion.TrySetCanceled(token), this);
                _ = Completion.Task.ContinueWith(static (_, state) => ((CancellationTokenRegistration)state!).Unregister(), registration, TaskScheduler.Default);
            }
        }
    }
}
