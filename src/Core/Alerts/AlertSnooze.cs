namespace Telemetry.Core.Alerts;

/// <summary>How long an alert may be snoozed, by its priority.</summary>
public static class AlertSnooze
{
    /// <summary>
    /// The longest snooze of an alert of <paramref name="priority"/>: an hour for high (a patient in danger is looked at
    /// again within the hour), a shift for medium, a day for low. A condition that should stay quiet for longer wants
    /// the patient's rules changed, not a snooze.
    /// </summary>
    public static TimeSpan Longest(AlertPriority priority) => priority switch
    {
        AlertPriority.Low => TimeSpan.FromHours(24),
        AlertPriority.Medium => TimeSpan.FromHours(8),

        // High, and any priority not known here: the shortest.
        _ => TimeSpan.FromHours(1),
    };
}
