using Telemetry.Protos;

namespace Telemetry.Simulator;

/// <summary>
/// One simulated wearable. Heart rate follows a daily rhythm with exercise bursts, SpO2 and respiratory rate wander
/// with noise, steps come in walking bouts, skin temperature drifts slowly. Readings come out as protobuf batches.
/// </summary>
public sealed class VirtualWearable(string deviceId, string patientId, string token, int seed)
{
    private readonly Random _random = new(seed);
    private readonly double _restingHeartRate = 58 + new Random(seed).NextDouble() * 15;
    private long _exerciseUntilMs;
    private long _walkingUntilMs;
    private int _tick;

    public string DeviceId { get; } = deviceId;

    public string PatientId { get; } = patientId;

    public string Token { get; } = token;

    public ulong Sequence { get; private set; }

    /// <summary>The next batch: <paramref name="count"/> readings spread evenly from <paramref name="startMs"/>, <paramref name="intervalMs"/> apart.</summary>
    public VitalBatch NextBatch(long startMs, double intervalMs, int count)
    {
        var series = new Dictionary<string, (VitalSeries Series, long LastMs)>();
        for (var i = 0; i < count; i++)
        {
            var timeMs = startMs + (long)(i * intervalMs);
            var (kind, value) = NextReading(timeMs);
            if (!series.TryGetValue(kind, out var entry))
            {
                entry = (new VitalSeries { Kind = kind }, startMs);
            }

            entry.Series.TimeDeltasMs.Add(timeMs - entry.LastMs);
            entry.Series.Values.Add(Math.Round(value, 2));
            series[kind] = (entry.Series, timeMs);
        }

        var batch = new VitalBatch { Seq = ++Sequence, BaseTimeMs = startMs };
        batch.Series.AddRange(series.Values.Select(entry => entry.Series));
        return batch;
    }

    private (string Kind, double Value) NextReading(long timeMs)
    {
        _tick++;
        if (timeMs > _exerciseUntilMs && _random.NextDouble() < 0.0005)
        {
            _exerciseUntilMs = timeMs + _random.Next(5, 20) * 60_000;
        }

        if (timeMs > _walkingUntilMs && _random.NextDouble() < 0.002)
        {
            _walkingUntilMs = timeMs + _random.Next(2, 15) * 60_000;
        }

        return (_tick % 20) switch
        {
            5 => ("spo2", Math.Clamp(97.5 + Gaussian(0.8), 90, 100)),
            10 => ("steps", timeMs < _walkingUntilMs ? _random.Next(1, 4) : 0),
            15 => ("respiratory_rate", 14 + Gaussian(1.5) + (timeMs < _exerciseUntilMs ? 10 : 0)),
            19 => ("body_temperature", 36.7 + (0.3 * DailyRhythm(timeMs)) + Gaussian(0.05)),
            _ => ("heart_rate", _restingHeartRate + (8 * DailyRhythm(timeMs)) + (timeMs < _exerciseUntilMs ? 55 : 0) + Gaussian(2)),
        };
    }

    /// <summary>-1 at 4 am, +1 at 4 pm.</summary>
    private static double DailyRhythm(long timeMs)
    {
        var hours = timeMs / 3_600_000.0 % 24;
        return -Math.Cos((hours - 4) / 24 * 2 * Math.PI);
    }

    private double Gaussian(double deviation)
    {
        var u1 = 1.0 - _random.NextDouble();
        var u2 = _random.NextDouble();
        return deviation * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }
}
