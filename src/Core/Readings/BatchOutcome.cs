using Telemetry.Core.Vitals;

namespace Telemetry.Core.Readings;

/// <summary>
/// What committing one device batch did: whether its sequence number was new, which of its readings were stored, how
/// many were already stored before (the same device, vital, time and value, see <see cref="SameValue"/>), how many conflict with one stored before
/// (the same device, vital and time with another value: not stored, the first value stands), and which of its
/// implausible readings its patient's grain is to judge: those kept in quarantine by this commit, and any a commit that
/// failed kept all the same (one kept before, sent again, is not: the grain judged it the first time).
/// </summary>
public readonly record struct BatchOutcome(CommitOutcome Outcome, ReadOnlyMemory<VitalReading> Stored, int Duplicates, ReadOnlyMemory<VitalReading> Quarantined, int Conflicts = 0)
{
    /// <summary>
    /// Whether a reading of <paramref name="kind"/> sent again with <paramref name="sent"/> repeats the one stored with
    /// <paramref name="stored"/> (a duplicate) rather than contradicting it (a conflict): within what a unit's conversion
    /// and an app's rounding leave (100.4 °F and 38 °C, 154.3 lb and 70.0 kg are one reading; see
    /// <see cref="VitalDefinition.SameReadingWithin"/>).
    /// </summary>
    public static bool SameValue(VitalKind kind, double stored, double sent) => VitalCatalogue.Get(kind).IsSameReading(stored, sent);

    public static BatchOutcome DuplicateBatch(int readings) =>
        new(CommitOutcome.Duplicate, ReadOnlyMemory<VitalReading>.Empty, readings, ReadOnlyMemory<VitalReading>.Empty);
}
