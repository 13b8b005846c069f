namespace Telemetry.Core.Rollups;

/// <summary>Names and window arithmetic for <see cref="Resolution"/>.</summary>
public static class ResolutionExtensions
{
    /// <summary>Every resolution, finest first.</summary>
    public static IReadOnlyList<Resolution> All { get; } = [Resolution.Minute, Resolution.Hour, Resolution.Day];

    public static long Milliseconds(this Resolution resolution) => (long)resolution * 1_000;

    /// <summary>The start of the window of <paramref name="resolution"/> that holds <paramref name="timestampMs"/>.</summary>
    public static long WindowStart(this Resolution resolution, long timestampMs)
    {
        var length = resolution.Milliseconds();
        return timestampMs - (((timestampMs % length) + length) % length);
    }

    /// <summary>The name used on the wire: 1m, 1h, 1d.</summary>
    public static string ToWireName(this Resolution resolution) => resolution switch
    {
        Resolution.Minute => "1m",
        Resolution.Hour => "1h",
        Resolution.Day => "1d",
        _ => throw new ArgumentOutOfRangeException(nameof(resolution), resolution, null),
    };

    public static bool TryParseWireName(string? name, out Resolution resolution)
    {
        switch (name)
        {
            case "1m":
                resolution = Resolution.Minute;
                return true;
            case "1h":
                resolution = Resolution.Hour;
                return true;
            case "1d":
                resolution = Resolution.Day;
                return true;
            default:
                resolution = default;
                return false;
        }
    }
}
