using Telemetry.Core.Vitals;

namespace Telemetry.Core.Alerts;

/// <summary>
/// One alert episode: raised when a rule's condition starts to hold for a patient, over when it clears. There is at
/// most one open episode per rule and patient.
/// </summary>
/// <param name="AlertId">Names the episode: the patient id, '~', and the patient's episode number.</param>
/// <param name="Value">The value that raised it (a vital, a rate per minute, a score), when it has one.</param>
/// <param name="TriggeredAt">The time of the reading that raised it (for no-data, when the silence began); never after <paramref name="RaisedAt"/> (a reading stamped ahead of the server's clock counts as of when it came).</param>
/// <param name="RaisedAt">When the server raised it.</param>
/// <param name="EscalatesAt">When it escalates next if nobody acknowledges it.</param>
/// <param name="SnoozedBy">Who snoozed it last (as <paramref name="AcknowledgedBy"/> names who acknowledged it).</param>
/// <param name="ClearReason">Why it was cleared when its condition did not end (its rule was removed); null when it did.</param>
[GenerateSerializer, Immutable]
public sealed record Alert(
    string AlertId,
    string PatientId,
    string RuleId,
    AlertRuleType RuleType,
    AlertCategory Category,
    AlertPriority Priority,
    VitalKind? Kind,
    AlertStatus Status,
    string Message,
    double? Value,
    DateTimeOffset TriggeredAt,
    DateTimeOffset RaisedAt,
    DateTimeOffset? AcknowledgedAt = null,
    string? AcknowledgedBy = null,
    DateTimeOffset? SnoozedUntil = null,
    DateTimeOffset? ClearedAt = null,
    int EscalationLevel = 0,
    DateTimeOffset? EscalatesAt = null,
    string? SnoozedBy = null,
    string? ClearReason = null)
{
    public bool IsOpen => Status != AlertStatus.Cleared;
}
