using Telemetry.Core.Vitals;

namespace Telemetry.Storage.Influx;

/// <summary>
/// The times and values of the readings without a batch number (SenML, uploads, JSON without <c>seq</c>) that this
/// server committed lately, per device and vital. A series server shows a write a while after answering it, so within that while its
/// lookup cannot say that a resend of them (a device whose ack was lost) is stored; this can. Each entry is kept for
/// <c>keepFor</c> (the server's <see cref="SeriesServerOptions.ReadableAfter"/>), and at most
/// <see cref="MaxPerSeries"/> per device and vital, the oldest forgotten first (a bulk upload of a year, say: its
/// resends are found by the lookup once the server shows it).
/// </summary>
internal sealed class RecentReadings(TimeSpan keepFor)
{
    public const int MaxPerSeries = 4_096;

    private readonly long _keepForMs = (long)keepFor.TotalMilliseconds;
    private readonly Dictionary<(string DeviceId, VitalKind Kind), Series> _series = [];
    private long _sweepDueMs = long.MinValue;

    public int Count => _series.Values.Sum(series => series.Times.Count);

    public bool Contains(string deviceId, VitalKind kind, long timestampMs) => TryGetValue(deviceId, kind, timestampMs, out _);

    /// <summary>The value committed lately for the device, vital and time, if any.</summary>
    public bool TryGetValue(string deviceId, VitalKind kind, long timestampMs, out double value)
    {
        value = 0;
        return _series.TryGetValue((deviceId, kind), out var series) && series.Times.TryGetValue(timestampMs, out value);
    }

    public void Add(string deviceId, VitalKind kind, long timestampMs, double value, long nowMs)
    {
        if (!_series.TryGetValue((deviceId, kind), out var series))
        {
            _series[(deviceId, kind)] = series = new Series();
        }

        if (!series.Times.TryAdd(timestampMs, value))
        {
            return;
        }

        series.Order.Enqueue((nowMs, timestampMs));
        if (series.Order.Count > MaxPerSeries)
        {
            series.Times.Remove(series.Order.Dequeue().TimestampMs);
        }
    }

    /// <summary>Forgets what is older than the keeping time: every series, once per keeping time at most.</summary>
    public void Sweep(long nowMs)
    {
        if (nowMs < _sweepDueMs)
        {
            return;
        }

        _sweepDueMs = nowMs + _keepForMs;
        var expired = nowMs - _keepForMs;
        List<(string, VitalKind)>? empty = null;
        foreach (var (key, series) in _series)
        {
            while (series.Order.TryPeek(out var oldest) && oldest.AddedMs <= expired)
            {
                series.Times.Remove(series.Order.Dequeue().TimestampMs);
            }

            if (series.Order.Count == 0)
            {
                (empty ??= []).Add(key);
            }
        }

        empty?.ForEach(key => _series.Remove(key));
    }

    private sealed class Series
    {
        public Dictionary<long, double> Times { get; } = [];

        public Queue<(long AddedMs, long TimestampMs)> Order { get; } = new();
    }
}
