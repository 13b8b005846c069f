using Telemetry.Core.Rollups;
using Telemetry.Core.Storage;

namespace Telemetry.Storage.DuckDb;

/// <summary>
/// Reads patients' aggregates so that requests over the same span and resolution that arrive together are answered by
/// one query. A patient's aggregate scans every reading of the span (the readings of all patients are interleaved in
/// the files, so a patient's rows cannot be skipped to), and patient grains ask for the same span, yesterday and today,
/// when they activate: after a start, when a fleet comes back, when devices of many new patients begin to send. Read one
/// by one, each activation would scan those two days again. The first request is read at once; those that arrive
/// while it runs go together in the next query (up to <see cref="MaxPatientsPerRead"/> patients each). When a query
/// for several patients fails, each is read alone, so one patient's failure is not every patient's.
/// </summary>
internal sealed class AggregateReads(Func<IReadOnlyList<string>, long, long, Resolution, IReadOnlyDictionary<string, RawAggregate>> read)
{
    /// <summary>The most patients one query reads for (two days of minute windows are about a megabyte a patient).</summary>
    public const int MaxPatientsPerRead = 64;

    private static readonly RawAggregate Nothing = new([], 0);

    private readonly Lock _lock = new();

    // Requests not yet read, by span; a span is in _reading while a query for it runs or is about to.
    private readonly Dictionary<Span, List<Request>> _waiting = [];
    private readonly HashSet<Span> _reading = [];

    public Task<RawAggregate> ReadAsync(string patientId, long fromMs, long toMs, Resolution resolution, CancellationToken cancellationToken)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return Task.FromCanceled<RawAggregate>(cancellationToken);
        }

        var span = new Span(fromMs, toMs, resolution);
        var request = new Request(patientId);
        bool first;
        lock (_lock)
        {
            if (!_waiting.TryGetValue(span, out var requests))
            {
                _waiting[span] = requests = [];
            }

            requests.Add(request);
            first = _reading.Add(span);
        }

        if (first)
        {
            _ = Task.Run(() => ReadWaiting(span), CancellationToken.None);
        }

        // A caller that gives up stops waiting, and a request given up before its query is left out of it.
        request.StopWaitingOn(cancellationToken);
        return request.Completion.Task;
    }

    /// <summary>Reads the span's waiting requests, a query at a time, until none is left.</summary>
    private void ReadWaiting(Span span)
    {
        List<Request> taken = [];
        List<string> patients;
        try
        {
            while (true)
            {
                lock (_lock)
                {
                    if (!_waiting.Remove(span, out var waiting))
                    {
                        _reading.Remove(span);
                        return;
                    }

                    (taken, patients) = Take(waiting, out var rest);
                    if (rest.Count > 0)
                    {
                        _waiting[span] = rest;
                    }
                }

                if (patients.Count > 0 && !TryRead(patients, taken, span) && patients.Count > 1)
                {
                    // A query for several failed: each patient alone, so that only those whose own read fails fail.
                    foreach (var patient in patients)
                    {
                        TryRead([patient], taken, span);
                    }
                }
            }
        }
        catch (Exception exception)
        {
            // Not a query's failure (those go to their requests): whatever waits fails, and the span starts afresh.
            List<Request>? waiting;
            lock (_lock)
            {
                _waiting.Remove(span, out waiting);
                _reading.Remove(span);
            }

            foreach (var request in taken.Concat(waiting ?? []))
            {
                request.Completion.TrySetException(exception);
            }
        }
    }

    /// <summary>Reads <paramref name="patients"/> and answers their requests among <paramref name="requests"/>; false when the query failed.</summary>
    private bool TryRead(List<string> patients, List<Request> requests, Span span)
    {
        IReadOnlyDictionary<string, RawAggregate> aggregates;
        try
        {
            aggregates = read(patients, span.FromMs, span.ToMs, span.Resolution);
        }
        catch (Exception exception)
        {
            if (patients.Count == 1)
            {
                foreach (var request in requests.Where(request => request.PatientId == patients[0]))
                {
                    request.Completion.TrySetException(exception);
                }
            }

            return false;
        }

        foreach (var request in requests)
        {
            if (patients.Count > 1 || request.PatientId == patients[0])
            {
                request.Completion.TrySetResult(aggregates.GetValueOrDefault(request.PatientId) ?? Nothing);
            }
        }

        return true;
    }

    /// <summary>
    /// The requests of the first <see cref="MaxPatientsPerRead"/> patients still waited for, and those patients (each
    /// once); the others' requests go to <paramref name="rest"/>. Requests given up are dropped.
    /// </summary>
    private static (List<Request> Taken, List<string> Patients) Take(List<Request> requests, out List<Request> rest)
    {
        rest = [];
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var patients = new List<string>();
        var taken = new List<Request>(Math.Min(requests.Count, MaxPatientsPerRead));
        foreach (var request in requests)
        {
            if (request.Completion.Task.IsCompleted)
            {
                continue;
            }

            if (seen.Contains(request.PatientId) || seen.Count < MaxPatientsPerRead)
            {
                if (seen.Add(request.PatientId))
                {
                    patients.Add(request.PatientId);
                }

                taken.Add(request);
            }
            else
            {
                rest.Add(request);
            }
        }

        return (taken, patients);
    }

    private readonly record struct Span(long FromMs, long ToMs, Resolution Resolution);

    private sealed class Request(string patientId)
    {
        public string PatientId { get; } = patientId;

        public TaskCompletionSource<RawAggregate> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

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
