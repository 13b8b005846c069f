namespace Telemetry.Core.Alerts;

/// <summary>
/// What a snooze did: the alert as snoozed; or, refused as longer than its priority allows, that priority (the alert
/// unchanged). Both null when the patient has no such open alert.
/// </summary>
[GenerateSerializer, Immutable]
public sealed record SnoozeResult(Alert? Alert, AlertPriority? TooLongFor = null);
