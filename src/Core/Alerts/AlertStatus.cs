namespace Telemetry.Core.Alerts;

/// <summary>Where an alert episode is in its life: active, then acknowledged (or snoozed for a while), then cleared.</summary>
public enum AlertStatus : byte
{
    /// <summary>Raised and waiting for someone to acknowledge it; a high alert escalates while it waits.</summary>
    Active = 1,

    /// <summary>Someone has taken it on; it stays open until the condition clears.</summary>
    Acknowledged = 2,

    /// <summary>Silenced until a chosen time, after which it is active again if the condition still holds.</summary>
    Snoozed = 3,

    /// <summary>The condition has cleared: the episode is over.</summary>
    Cleared = 4,
}
