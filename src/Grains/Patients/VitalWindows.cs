using Telemetry.Core.Rollups;
using Telemetry.Core.Vitals;

namespace Telemetry.Grains.Patients;

/// <summary>
/// One vital's open windows in a patient's grain: the open minute, the closed minutes of the open hour and the
/// closed hours of the open day. Readings fold in; windows that close are handed out as rollups.
/// </summary>
internal sealed class VitalWindows(VitalKind kind)
{
    private RollupWindow _minute;
    private RollupWindow _hour;
    private RollupWindow _day;

    public VitalKind Kind { get; } = kind;

    // The latest reading is the open minute's last: a reading later than it opens a new minute or folds into this one,
    // and one that falls in a closed minute is earlier than it.

    /// <summary>The value of the vital's latest reading (meaningless while <see cref="LatestMs"/> is <see cref="long.MinValue"/>).</summary>
    public double LatestValue => _minute.Last;

    /// <summary>The time of the vital's latest reading, or <see cref="long.MinValue"/> before any.</summary>
    public long LatestMs => _minute.Count == 0 ? long.MinValue : _minute.LastMs;

    public RollupWindow Minute => _minute;

    /// <summary>
    /// The last minute of this vital an activation read from the raw store when it rebuilt (it read nothing of the
    /// vital after it), or <see cref="long.MinValue"/> for windows that started from readings.
    /// </summary>
    public long RebuiltLastMinuteMs { get; private set; } = long.MinValue;

    /// <summary>Starts from windows rebuilt out of the raw store, oldest first, all of one vital and one day.</summary>
    public static VitalWindows Rebuild(VitalKind kind, IReadOnlyList<RollupWindow> minutes, IClosedWindows closed)
    {
        var windows = new VitalWindows(kind);
        foreach (var minute in minutes)
        {
            windows.Fold(minute, closed);
            windows.RebuiltLastMinuteMs = minute.StartMs;
        }

        return windows;
    }

    /// <summary>
    /// Folds one reading in. Returns false when the reading falls in a minute that is already closed; the caller then has
    /// the closed windows it touches recomputed from the raw store, and the open hour and day have already taken it.
    /// </summary>
    public bool Add(long timestampMs, double value, IClosedWindows closed)
    {
        var minuteStart = Resolution.Minute.WindowStart(timestampMs);
        if (_minute.Count > 0 && minuteStart < _minute.StartMs)
        {
            AddLate(timestampMs, value);
            return false;
        }

        Fold(RollupWindow.Of(minuteStart, timestampMs, value), closed);
        return true;
    }

    /// <summary>The window still open at <paramref name="resolution"/>, with everything folded into it so far.</summary>
    public RollupWindow? Open(Resolution resolution)
    {
        if (_minute.Count == 0)
        {
            return null;
        }

        return resolution switch
        {
            Resolution.Minute => _minute,
            Resolution.Hour => _hour.Merge(_minute),
            _ => _day.Merge(_hour).Merge(_minute),
        };
    }

    private void Fold(RollupWindow minute, IClosedWindows closed)
    {
        if (_minute.Count == 0)
        {
            _minute = minute;
            _hour = Empty(Resolution.Hour, minute.StartMs);
            _day = Empty(Resolution.Day, minute.StartMs);
            return;
        }

        if (minute.StartMs == _minute.StartMs)
        {
            _minute = _minute.Merge(minute);
            return;
        }

        // The open minute closes; so do the hour and the day when the new minute lies past them.
        closed.Add(Kind, Resolution.Minute, _minute);
        _hour = _hour.Merge(_minute);
        if (Resolution.Hour.WindowStart(minute.StartMs) != _hour.StartMs)
        {
            closed.Add(Kind, Resolution.Hour, _hour);
            _day = _day.Merge(_hour);
            _hour = Empty(Resolution.Hour, minute.StartMs);
        }

        if (Resolution.Day.WindowStart(minute.StartMs) != _day.StartMs)
        {
            closed.Add(Kind, Resolution.Day, _day);
            _day = Empty(Resolution.Day, minute.StartMs);
        }

        _minute = minute;
    }

    private void AddLate(long timestampMs, double value)
    {
        if (Resolution.Hour.WindowStart(timestampMs) == _hour.StartMs)
        {
            _hour = Include(_hour, timestampMs, value);
        }
        else if (Resolution.Day.WindowStart(timestampMs) == _day.StartMs)
        {
            _day = Include(_day, timestampMs, value);
        }
    }

    private static RollupWindow Include(RollupWindow window, long timestampMs, double value) =>
        window.Count == 0 ? RollupWindow.Of(window.StartMs, timestampMs, value) : window.Add(timestampMs, value);

    private static RollupWindow Empty(Resolution resolution, long timestampMs) =>
        new(resolution.WindowStart(timestampMs), 0, 0, double.PositiveInfinity, double.NegativeInfinity, 0, double.NaN, long.MinValue);
}
