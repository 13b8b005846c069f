using System.Collections.Concurrent;
using System.Diagnostics;

namespace Telemetry.Simulator;

/// <summary>What the fleet sent and what the server acknowledged, with ack latencies.</summary>
public sealed class FleetStatistics
{
    private readonly ConcurrentQueue<double> _latenciesMs = new();
    private readonly ConcurrentQueue<double> _alertLatenciesMs = new();
    private long _readingsSent;
    private long _batchesSent;
    private long _batchesAcked;
    private long _readingsAcked;
    private long _batchesRefused;
    private long _unanswered;
    private long _reconnects;

    public long ReadingsSent => Interlocked.Read(ref _readingsSent);

    public long ReadingsAcked => Interlocked.Read(ref _readingsAcked);

    public long BatchesSent => Interlocked.Read(ref _batchesSent);

    public long BatchesAcked => Interlocked.Read(ref _batchesAcked);

    public long BatchesRefused => Interlocked.Read(ref _batchesRefused);

    public void Sent(int readings)
    {
        Interlocked.Add(ref _readingsSent, readings);
        Interlocked.Increment(ref _batchesSent);
    }

    /// <summary>A batch sent at <paramref name="startedTimestamp"/> was acknowledged, now or at <paramref name="answeredTimestamp"/>.</summary>
    public void Acked(int readings, long startedTimestamp, long? answeredTimestamp = null)
    {
        Interlocked.Add(ref _readingsAcked, readings);
        Interlocked.Increment(ref _batchesAcked);
        _latenciesMs.Enqueue(Stopwatch.GetElapsedTime(startedTimestamp, answeredTimestamp ?? Stopwatch.GetTimestamp()).TotalMilliseconds);
    }

    public void Refused() => Interlocked.Increment(ref _batchesRefused);

    /// <summary>Sends that got no answer (the connection dropped or the ack did not come); the batch went again.</summary>
    public long Unanswered => Interlocked.Read(ref _unanswered);

    public long Reconnects => Interlocked.Read(ref _reconnects);

    public void NoAnswer() => Interlocked.Increment(ref _unanswered);

    public void Reconnected() => Interlocked.Increment(ref _reconnects);

    /// <summary>An alert probe's alert arrived, <paramref name="startedTimestamp"/> being when its reading was published.</summary>
    public void AlertArrived(long startedTimestamp) => _alertLatenciesMs.Enqueue(Stopwatch.GetElapsedTime(startedTimestamp).TotalMilliseconds);

    /// <summary>Ack latency percentiles of the acks since the last call.</summary>
    public (double P50, double P99) DrainLatencies() => Drain(_latenciesMs);

    /// <summary>Publish-to-alert latency percentiles of the probe alerts since the last call.</summary>
    public (double P50, double P99) DrainAlertLatencies() => Drain(_alertLatenciesMs);

    private static (double P50, double P99) Drain(ConcurrentQueue<double> queue)
    {
        var latencies = new List<double>();
        while (queue.TryDequeue(out var latency))
        {
            latencies.Add(latency);
        }

        if (latencies.Count == 0)
        {
            return (double.NaN, double.NaN);
        }

        latencies.Sort();
        return (latencies[(int)(latencies.Count * 0.50)], latencies[Math.Min(latencies.Count - 1, (int)(latencies.Count * 0.99))]);
    }
}
