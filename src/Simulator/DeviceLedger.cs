namespace Telemetry.Simulator;

/// <summary>
/// What one virtual wearable had acknowledged: each batch once (a batch resent after a lost ack and answered again
/// counts once), with the readings it held and the time they span, to compare with what the server stored.
/// </summary>
public sealed class DeviceLedger(string deviceId, string patientId)
{
    private readonly Lock _lock = new();
    private readonly HashSet<ulong> _batches = [];
    private readonly HashSet<string> _kinds = new(StringComparer.Ordinal);

    public string DeviceId { get; } = deviceId;

    public string PatientId { get; } = patientId;

    public long Readings { get; private set; }

    public long FirstMs { get; private set; } = long.MaxValue;

    public long LastMs { get; private set; } = long.MinValue;

    /// <summary>The vitals the acknowledged batches held.</summary>
    public IReadOnlyCollection<string> Kinds
    {
        get
        {
            lock (_lock)
            {
                return [.. _kinds];
            }
        }
    }

    /// <summary>Records an acknowledged batch; false when it was acknowledged before.</summary>
    public bool Acked(ulong seq, int readings, long firstMs, long lastMs, IEnumerable<string> kinds)
    {
        lock (_lock)
        {
            if (!_batches.Add(seq))
            {
                return false;
            }

            _kinds.UnionWith(kinds);
            Readings += readings;
            FirstMs = Math.Min(FirstMs, firstMs);
            LastMs = Math.Max(LastMs, lastMs);
            return true;
        }
    }
}
