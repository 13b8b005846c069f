namespace Telemetry.Core.Alerts;

/// <summary>What happened to an alert.</summary>
public enum AlertEventType : byte
{
    Raised = 1,
    Acknowledged = 2,
    Snoozed = 3,

    /// <summary>A snooze ran out while the condition still held: the alert is active again.</summary>
    Reactivated = 4,

    /// <summary>A high alert was not acknowledged in time.</summary>
    Escalated = 5,
    Cleared = 6,

    /// <summary>Its rule's priority or escalation was edited while it was open: the alert has the rule's now.</summary>
    Updated = 7,
}
