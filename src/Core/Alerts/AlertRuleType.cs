namespace Telemetry.Core.Alerts;

/// <summary>What an alert rule watches.</summary>
public enum AlertRuleType : byte
{
    /// <summary>A vital above or below a level, sustained for a time, clearing only past a separate clear level.</summary>
    Threshold = 1,

    /// <summary>A vital rising or falling faster than a rate per minute over a trailing window.</summary>
    RateOfChange = 2,

    /// <summary>No reading (of one vital, or of any) for a time, since the last one or, when none came, since the rule was set: a technical alert.</summary>
    NoData = 3,

    /// <summary>The NEWS2 early-warning score of the patient's latest vitals at or above a level.</summary>
    EarlyWarning = 4,

    /// <summary>A device sending readings outside the vital's plausible range: a technical (sensor) alert.</summary>
    Implausible = 5,
}
