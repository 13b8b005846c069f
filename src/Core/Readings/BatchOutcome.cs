namespace Telemetry.Core.Readings;

/// <summary>
/// What committing one device batch did: whether its sequence number was new, which of its readings were stored, and
/// how many were already stored before (the same device, vital and time).
/// </summary>
public readonly record struct BatchOutcome(CommitOutcome Outcome, ReadOnlyMemory<VitalReading> Stored, int Duplicates)
{
    public static BatchOutcome DuplicateBatch(int readings) => new(CommitOutcome.Duplicate, ReadOnlyMemory<VitalReading>.Empty, readings);
}
