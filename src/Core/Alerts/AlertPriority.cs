namespace Telemetry.Core.Alerts;

/// <summary>Alarm priority as IEC 60601-1-8 names it; higher values are more urgent.</summary>
public enum AlertPriority : byte
{
    Low = 1,
    Medium = 2,
    High = 3,
}
