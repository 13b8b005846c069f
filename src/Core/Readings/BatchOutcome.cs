namespace Telemetry.Core.Readings;

/// <summary>
/// What committing one device batch did: whether its sequence number was new, which of its readings were stored, how
/// many were already stored before (the same device, vital and time), and which of its implausible readings its
/// patient's grain is to judge: those kept in quarantine by this commit, and any a commit that failed kept all the same
/// (one kept before, sent again, is not: the grain judged it the first time).
/// </summary>
public readonly record struct BatchOutcome(CommitOutcome Outcome, ReadOnlyMemory<VitalReading> Stored, int Duplicates, ReadOnlyMemory<VitalReading> Quarantined)
{
    public static BatchOutcome DuplicateBatch(int readings) =>
        new(CommitOutcome.Duplicate, ReadOnlyMemory<VitalReading>.Empty, readings, ReadOnlyMemory<VitalReading>.Empty);
}
