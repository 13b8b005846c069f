namespace Telemetry.Grains.Alerts;

/// <summary>
/// The readings of one vital in a trailing window, for a rate of change: the least-squares slope of the points, which
/// one noisy reading moves far less than a difference of two would. Bounded: points are kept at least a
/// <see cref="Capacity"/>/2-th of the window apart (a reading closer to the one before the last replaces the last), so
/// however fast the vital comes the points span the whole window, and the latest reading is always one of them.
/// </summary>
internal sealed class RateWindow(long windowMs)
{
    private const int Capacity = 512;

    private readonly long _spacingMs = windowMs / (Capacity / 2);

    // A rate needs enough of the window covered to mean anything: a third of it, and three points.
    private const int MinPoints = 3;

    private readonly long[] _times = new long[Capacity];
    private readonly double[] _values = new double[Capacity];
    private int _start;
    private int _count;

    public void Add(long timestampMs, double value)
    {
        if (_count > 0 && timestampMs <= _times[(_start + _count - 1) % Capacity])
        {
            return;
        }

        if (_count >= 2 && timestampMs - _times[(_start + _count - 2) % Capacity] < _spacingMs)
        {
            // Close to the point before the last: it takes the last one's place.
            _count--;
        }
        else if (_count == Capacity)
        {
            _start = (_start + 1) % Capacity;
            _count--;
        }

        var at = (_start + _count) % Capacity;
        _times[at] = timestampMs;
        _values[at] = value;
        _count++;
        while (_count > 0 && _times[_start] < timestampMs - windowMs)
        {
            _start = (_start + 1) % Capacity;
            _count--;
        }
    }

    /// <summary>The slope in units per minute, when the window holds enough points over enough time.</summary>
    public bool TryGetSlopePerMinute(out double slope)
    {
        slope = 0;
        if (_count < MinPoints)
        {
            return false;
        }

        var first = _times[_start];
        var last = _times[(_start + _count - 1) % Capacity];
        if (last - first < windowMs / 3)
        {
            return false;
        }

        double sumX = 0, sumY = 0, sumXX = 0, sumXY = 0;
        for (var i = 0; i < _count; i++)
        {
            var at = (_start + i) % Capacity;
            var x = (_times[at] - first) / 60_000.0;
            var y = _values[at];
            sumX += x;
            sumY += y;
            sumXX += x * x;
            sumXY += x * y;
        }

        var denominator = (_count * sumXX) - (sumX * sumX);
        if (denominator <= 0)
        {
            return false;
        }

        slope = ((_count * sumXY) - (sumX * sumY)) / denominator;
        return true;
    }
}
