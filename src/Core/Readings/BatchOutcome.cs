namespace Telemetry.Core.Readings;

/// <summary>
/// What committing one device batch did: whether its sequence number was new, which of its readings were stored, how
/// many were already stored before (the same device, vital, time and value), how many conflict with one stored before
/// (the same device, vital and time with another value: not stored, the first value stands), and which of its
/// implausible readings its patient's grain is to judge: those kept in quarantine by this commit, and any a commit that
/// failed kept all the same (one kept before, sent again, is not: the grain judged it the first time).
/// </summary>
public readonly record struct BatchOutcome(CommitOutcome Outcome, ReadOnlyMemory<VitalReading> Stored, int Duplicates, ReadOnlyMemory<VitalReading> Quarantined, int Conflicts = 0)
{
    /// <summary>
    /// Whether a reading sent again with <paramref name="sent"/> repeats the one stored with <paramref name="stored"/>
    /// (a duplicate) rather than contradicting it (a conflict): equal but for the last bits a unit's conversion may
    /// leave (100.4 °F and 38 °C are one reading).
    /// </summary>
    public static bool SameValue(double stored, double sent) =>
        stored == sent || Math.Abs(stored - sent) <= 1e-9 * Math.Max(1, Math.Max(Math.Abs(stored), Math.Abs(sent)));

    public static BatchOutcome DuplicateBatch(int readings) =>
        new(CommitOutcome.Duplicate, ReadOnlyMemory<VitalReading>.Empty, readings, ReadOnlyMemory<VitalReading>.Empty);
}
