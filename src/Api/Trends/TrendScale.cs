using Telemetry.Core.Rollups;
using Telemetry.Storage.Retention;

namespace Telemetry.Api.Trends;

/// <summary>How finely a trend is read: raw readings, or rollup windows of 1 minute, 1 hour or 1 day.</summary>
public readonly record struct TrendScale(Resolution? Window)
{
    /// <summary>The longest range that <c>auto</c> answers with raw readings.</summary>
    public static readonly TimeSpan AutoRawUpTo = TimeSpan.FromHours(1);

    /// <summary>The longest range that <c>auto</c> answers with 1-minute windows.</summary>
    public static readonly TimeSpan AutoMinutesUpTo = TimeSpan.FromDays(1);

    /// <summary>The longest range that <c>auto</c> answers with 1-hour windows; longer ones get 1-day windows.</summary>
    public static readonly TimeSpan AutoHoursUpTo = TimeSpan.FromDays(62);

    public static TrendScale Raw { get; } = new(null);

    public bool IsRaw => Window is null;

    /// <summary>raw, 1m, 1h or 1d.</summary>
    public string WireName => Window?.ToWireName() ?? "raw";

    /// <summary>The scale that suits a range: about a thousand points or fewer, raw readings for the shortest ranges.</summary>
    public static TrendScale Auto(long fromMs, long toMs)
    {
        var range = TimeSpan.FromMilliseconds(toMs - fromMs);
        return range <= AutoRawUpTo ? Raw
            : range <= AutoMinutesUpTo ? new(Resolution.Minute)
            : range <= AutoHoursUpTo ? new(Resolution.Hour)
            : new(Resolution.Day);
    }

    /// <summary>
    /// As <see cref="Auto(long, long)"/>, but never a resolution that retention has already emptied at
    /// <paramref name="fromMs"/>: a range older than the raw readings kept is read from 1-minute windows, one older than
    /// those from 1-hour windows, and so on (a day of seven months ago in 1-hour windows, not an empty list of minutes).
    /// </summary>
    public static TrendScale Auto(long fromMs, long toMs, RetentionOptions retention, long nowMs)
    {
        var scale = Auto(fromMs, toMs);
        while (scale.Window != Resolution.Day && KeptDays(scale, retention) is > 0 and var days && fromMs < nowMs - (days * 86_400_000L))
        {
            scale = scale.Window switch
            {
                null => new(Resolution.Minute),
                Resolution.Minute => new(Resolution.Hour),
                _ => new(Resolution.Day),
            };
        }

        return scale;
    }

    // How long retention keeps this scale's data (0: for ever).
    private static int KeptDays(TrendScale scale, RetentionOptions retention) => scale.Window switch
    {
        null => retention.RawDays,
        Resolution.Minute => retention.MinuteRollupDays,
        Resolution.Hour => retention.HourRollupDays,
        _ => retention.DayRollupDays,
    };

    /// <summary>Parses raw, 1m, 1h or 1d; <c>auto</c> (or nothing) gives null, for the caller to choose by range.</summary>
    public static bool TryParse(string? name, out TrendScale? scale)
    {
        scale = null;
        if (name is null or "auto")
        {
            return true;
        }

        if (name == "raw")
        {
            scale = Raw;
            return true;
        }

        if (ResolutionExtensions.TryParseWireName(name, out var resolution))
        {
            scale = new TrendScale(resolution);
            return true;
        }

        return false;
    }

    /// <summary>How many windows of this scale [<paramref name="fromMs"/>, <paramref name="toMs"/>) spans (0 for raw).</summary>
    public long WindowsSpanned(long fromMs, long toMs) =>
        Window is { } window ? (toMs - window.WindowStart(fromMs) + window.Milliseconds() - 1) / window.Milliseconds() : 0;
}
