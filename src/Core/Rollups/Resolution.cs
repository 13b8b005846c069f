namespace Telemetry.Core.Rollups;

/// <summary>A rollup resolution; the value is the window's length in seconds.</summary>
public enum Resolution
{
    Minute = 60,
    Hour = 3_600,
    Day = 86_400,
}
