using Telemetry.Core.Readings;
using Telemetry.Core.Vitals;

namespace Telemetry.Storage;

/// <summary>
/// The implausible readings a failed commit was to hand to their grains: it may have kept them all the same (its write
/// landed after all, or part of it), but nothing of a failed commit is handed on, so no grain judged them. When such a
/// reading comes again and is found kept, it is handed on then (and not kept again); once a commit has handed it on it is
/// forgotten. The last <see cref="Capacity"/> are remembered (a restart forgets them: such a reading is then not judged).
/// Used by the commit loop alone.
/// </summary>
internal sealed class UnjudgedQuarantine
{
    public const int Capacity = 10_000;

    // Each reading with the number it was noted under, so that an entry forgotten and noted again is not dropped early
    // by its older place in the order.
    private readonly Dictionary<(string DeviceId, VitalKind Kind, long TimestampMs), long> _readings = [];
    private readonly Queue<((string DeviceId, VitalKind Kind, long TimestampMs) Key, long Noted)> _order = new();
    private long _noted;

    public bool Contains(string deviceId, VitalKind kind, long timestampMs) =>
        _readings.Count > 0 && _readings.ContainsKey((deviceId, kind, timestampMs));

    /// <summary>A commit failed: the implausible readings it was to hand on (its outcomes') are remembered.</summary>
    public void Failed(IReadOnlyList<DeviceBatch> batches, ReadOnlySpan<BatchOutcome> outcomes)
    {
        for (var i = 0; i < batches.Count; i++)
        {
            foreach (var reading in outcomes[i].Quarantined.Span)
            {
                // Noted again (the same batch failing again), it takes a new place: its older one is passed over.
                var key = (batches[i].DeviceId, reading.Kind, reading.TimestampMs);
                _readings[key] = ++_noted;
                _order.Enqueue((key, _noted));
            }
        }

        while (_order.Count > Capacity)
        {
            var (key, noted) = _order.Dequeue();
            if (_readings.TryGetValue(key, out var current) && current == noted)
            {
                _readings.Remove(key);
            }
        }
    }

    /// <summary>A commit succeeded: the implausible readings it handed on are judged, and forgotten here.</summary>
    public void Committed(IReadOnlyList<DeviceBatch> batches, ReadOnlySpan<BatchOutcome> outcomes)
    {
        if (_readings.Count == 0)
        {
            return;
        }

        for (var i = 0; i < batches.Count; i++)
        {
            foreach (var reading in outcomes[i].Quarantined.Span)
            {
                _readings.Remove((batches[i].DeviceId, reading.Kind, reading.TimestampMs));
            }
        }

        // The order keeps the forgotten ones' places until they come up: it is trimmed when it alone is over the bound.
        if (_readings.Count == 0)
        {
            _order.Clear();
        }
    }
}
