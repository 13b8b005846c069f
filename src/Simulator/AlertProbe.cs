using System.Diagnostics;
using Telemetry.Protos;

namespace Telemetry.Simulator;

/// <summary>
/// One device's alert probes: every <c>seconds</c> it makes a heart rate it was sending anyway one over the probe
/// rule's level, and times the rule's raised alert from that publish to its arrival on the patient's alerts topic.
/// The first probe comes at a random point of the first period, so a fleet's alerts arrive evenly.
/// </summary>
internal sealed class AlertProbe(double seconds, FleetStatistics statistics)
{
    /// <summary>A heart rate no simulated patient reaches, so every probe (and nothing else) raises one alert.</summary>
    public const double Value = 260;

    private readonly long _period = (long)(seconds * Stopwatch.Frequency);
    private long _next = Stopwatch.GetTimestamp() + (long)(Random.Shared.NextDouble() * seconds * Stopwatch.Frequency);

    // When the probe waiting for its alert was published; 0 when none waits.
    private long _sent;

    /// <summary>Makes <paramref name="batch"/>, about to be published at <paramref name="now"/>, a probe when one is due.</summary>
    public void Mark(VitalBatch batch, long now)
    {
        if (now >= _next && Settled(Interlocked.Read(ref _sent)) && TryRaise(batch))
        {
            Interlocked.Exchange(ref _sent, now);
            _next = now + _period;
        }
    }

    /// <summary>A message on the patient's alerts topic: the probe rule's raised event ends the wait.</summary>
    public void OnAlert(ReadOnlySpan<byte> payload)
    {
        if (payload.IndexOf("\"type\":\"raised\""u8) >= 0 && Interlocked.Exchange(ref _sent, 0) is var sent and not 0)
        {
            statistics.AlertArrived(sent);
        }
    }

    /// <summary>No probe is waiting for its alert, or the one waiting has waited too long to count (it is dropped).</summary>
    private static bool Settled(long sent) => sent == 0 || Stopwatch.GetElapsedTime(sent) > TimeSpan.FromSeconds(10);

    /// <summary>
    /// Makes the batch's last heart rate one over the probe level; false for a batch without a heart rate (the probe
    /// waits for the next). The probe is a reading the device was sending anyway, in its place in time: an extra one
    /// would put the heart rate series out of order and make the next batch's readings look like repeats.
    /// </summary>
    private static bool TryRaise(VitalBatch batch)
    {
        var heartRate = batch.Series.LastOrDefault(series => series.Kind == "heart_rate");
        if (heartRate is null || heartRate.Values.Count == 0)
        {
            return false;
        }

        heartRate.Values[^1] = Value;
        return true;
    }
}
