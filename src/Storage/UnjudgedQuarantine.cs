using Telemetry.Core.Readings;
using Telemetry.Core.Vitals;

namespace Telemetry.Storage;

/// <summary>
/// The implausible readings of commits that failed: a failed commit may have kept them all the same (its write landed
/// after all, or part of it), but no grain judged them, as nothing of a failed commit is handed on. When the batch comes
/// again and they are found kept, they are handed on then, once, and not kept again. The last
/// <see cref="Capacity"/> are remembered (a restart forgets them: such a reading is then not judged).
/// </summary>
internal sealed class UnjudgedQuarantine
{
    public const int Capacity = 10_000;

    private readonly HashSet<(string DeviceId, VitalKind Kind, long TimestampMs)> _readings = [];
    private readonly Queue<(string DeviceId, VitalKind Kind, long TimestampMs)> _order = new();

    /// <summary>Notes the quarantined readings of a flush whose commit failed.</summary>
    public void Note(IReadOnlyList<DeviceBatch> batches)
    {
        foreach (var batch in batches)
        {
            foreach (var reading in batch.Quarantined.Span)
            {
                var key = (batch.DeviceId, reading.Kind, reading.TimestampMs);
                if (_readings.Add(key))
                {
                    _order.Enqueue(key);
                }
            }
        }

        while (_order.Count > Capacity)
        {
            _readings.Remove(_order.Dequeue());
        }
    }

    /// <summary>True, once, for a reading a failed commit brought: found kept, it is to be judged now.</summary>
    public bool Take(string deviceId, VitalKind kind, long timestampMs) =>
        _readings.Count > 0 && _readings.Remove((deviceId, kind, timestampMs));
}
