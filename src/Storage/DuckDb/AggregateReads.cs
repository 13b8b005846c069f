using Telemetry.Core.Rollups;
using Telemetry.Core.Storage;

namespace Telemetry.Storage.DuckDb;

/// <summary>
/// Reads patients' aggregates so that requests over the same span and resolution that arrive together are answered by
/// one query. A patient's aggregate scans every reading of the span (the readings of all patients are interleaved in
/// the files, so a patient's rows cannot be skipped to), and patient grains ask for the same span, yesterday and today,
/// when they activate: after a start, when a fleet comes back, when devices of many new patients begin to send. Read one
/// by one, each activation would scan those two days again. The first request is read at once; those that arrive
/// while it runs go together in the next query (up to <see cref="MaxPatientsPerRead"/> patients each).
/// </summary>
internal sealed class AggregateReads(Func<IReadOnlyList<string>, long, long, Resolution, IReadOnlyDictionary<string, RawAggregate>> read)
{
    /// <summary>The most patients one query reads for.</summary>
    public const int MaxPatientsPerRead = 256;

    private static readonly RawAggregate Nothing = new([], 0);

    private readonly Lock _lock = new();

    // Requests not yet read, by span; a span is in _reading while a query for it runs or is about to.
    private readonly Dictionary<Span, List<Request>> _waiting = [];
    private readonly HashSet<Span> _reading = [];

    public Task<RawAggregate> ReadAsync(string patientId, long fromMs, long toMs, Resolution resolution, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
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

        // A caller that gives up stops waiting; the query goes on for the others.
        return request.Completion.Task.WaitAsync(cancellationToken);
    }

    /// <summary>Reads the span's waiting requests, a query at a time, until none is left.</summary>
    private void ReadWaiting(Span span)
    {
        while (true)
        {
            List<Request> requests;
            lock (_lock)
            {
                if (!_waiting.Remove(span, out var waiting))
                {
                    _reading.Remove(span);
                    return;
                }

                requests = waiting;
                if (!TakeFirstPatients(ref requests, out var rest))
                {
                    _waiting[span] = rest;
                }
            }

            try
            {
                var aggregates = read([.. requests.Select(request => request.PatientId).Distinct(StringComparer.Ordinal)], span.FromMs, span.ToMs, span.Resolution);
                foreach (var request in requests)
                {
                    request.Completion.TrySetResult(aggregates.GetValueOrDefault(request.PatientId) ?? Nothing);
                }
            }
            catch (Exception exception)
            {
                foreach (var request in requests)
                {
                    request.Completion.TrySetException(exception);
                }
            }
        }
    }

    /// <summary>
    /// Keeps in <paramref name="requests"/> those of the first <see cref="MaxPatientsPerRead"/> patients; the others go to
    /// <paramref name="rest"/>. True when none is left over.
    /// </summary>
    private static bool TakeFirstPatients(ref List<Request> requests, out List<Request> rest)
    {
        rest = [];
        var patients = new HashSet<string>(StringComparer.Ordinal);
        var taken = new List<Request>(Math.Min(requests.Count, MaxPatientsPerRead));
        foreach (var request in requests)
        {
            if (patients.Contains(request.PatientId) || patients.Count < MaxPatientsPerRead)
            {
                patients.Add(request.PatientId);
                taken.Add(request);
            }
            else
            {
                rest.Add(request);
            }
        }

        requests = taken;
        return rest.Count == 0;
    }

    private readonly record struct Span(long FromMs, long ToMs, Resolution Resolution);

    private sealed class Request(string patientId)
    {
        public string PatientId { get; } = patientId;

        public TaskCompletionSource<RawAggregate> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
