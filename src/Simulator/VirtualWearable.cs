using Telemetry.Protos;

namespace Telemetry.Simulator;

/// <summary>
/// One simulated wearable. Heart rate follows a daily rhythm with exercise bursts, SpO2 and respiratory rate wander
/// with noise, steps come in walking bouts, skin temperature drifts slowly. Readings come out as protobuf batches.
/// </summary>
public sealed class VirtualWearable(string deviceId, string patientId, string token, int seed)
{
    // The vitals a wearable sends; a reading's kind is its index here.
    private static readonly string[] Kinds = ["heart_rate", "spo2", "steps", "respiratory_rate", "body_temperature"];
    private const int HeartRate = 0;
    private const int Spo2 = 1;
    private const int Steps = 2;
    private const int RespiratoryRate = 3;
    private const int BodyTemperature = 4;

    private readonly Random _random = new(seed);
    private readonly double _restingHeartRate = 58 + new Random(seed).NextDouble() * 15;
    private long _exerciseUntilMs;
    private long _walkingUntilMs;
    private int _tick;

    // Box-Muller gives two independent normal values: the second is kept for the next call.
    private double _spareNormal = double.NaN;

    // The daily rhythm, as last worked out, and the time it was worked out for (it moves by a few thousandths a minute).
    private double _rhythm = double.NaN;
    private long _rhythmAtMs;

    // The batch NextBatchReused fills, and its series by kind.
    private VitalBatch? _reused;
    private VitalSeries?[]? _reusedSeries;

    public string DeviceId { get; } = deviceId;

    public string PatientId { get; } = patientId;

    public string Token { get; } = token;

    public ulong Sequence { get; private set; }

    /// <summary>The next batch: <paramref name="count"/> readings spread evenly from <paramref name="startMs"/>, <paramref name="intervalMs"/> apart.</summary>
    public VitalBatch NextBatch(long startMs, double intervalMs, int count) =>
        Fill(new VitalBatch(), new VitalSeries?[Kinds.Length], startMs, intervalMs, count);

    /// <summary>
    /// The next batch, as <see cref="NextBatch"/>, in the one batch this wearable keeps for it: valid until the next
    /// call, for a sender that has encoded it by then. A load generator that makes a new batch for every message spends
    /// much of the cores it shares with the server on allocating them.
    /// </summary>
    public VitalBatch NextBatchReused(long startMs, double intervalMs, int count) =>
        Fill(_reused ??= new VitalBatch(), _reusedSeries ??= new VitalSeries?[Kinds.Length], startMs, intervalMs, count);

    /// <summary>Fills <paramref name="batch"/> anew; <paramref name="series"/> holds its series by kind, made on first use.</summary>
    private VitalBatch Fill(VitalBatch batch, VitalSeries?[] series, long startMs, double intervalMs, int count)
    {
        batch.Series.Clear();
        Span<long> lastMs = stackalloc long[Kinds.Length];
        lastMs.Fill(startMs);
        foreach (var one in series)
        {
            one?.TimeDeltasMs.Clear();
            one?.Values.Clear();
        }

        for (var i = 0; i < count; i++)
        {
            var timeMs = startMs + (long)(i * intervalMs);
            var (kind, value) = NextReading(timeMs);
            var one = series[kind] ??= new VitalSeries { Kind = Kinds[kind] };
            if (one.Values.Count == 0)
            {
                batch.Series.Add(one);
            }

            one.TimeDeltasMs.Add(timeMs - lastMs[kind]);
            one.Values.Add(Math.Round(value, 2));
            lastMs[kind] = timeMs;
        }

        batch.Seq = ++Sequence;
        batch.BaseTimeMs = startMs;
        return batch;
    }

    private (int Kind, double Value) NextReading(long timeMs)
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
            5 => (Spo2, Math.Clamp(97.5 + Gaussian(0.8), 90, 100)),
            10 => (Steps, timeMs < _walkingUntilMs ? _random.Next(1, 4) : 0),
            15 => (RespiratoryRate, 14 + Gaussian(1.5) + (timeMs < _exerciseUntilMs ? 10 : 0)),
            19 => (BodyTemperature, 36.7 + (0.3 * DailyRhythm(timeMs)) + Gaussian(0.05)),
            _ => (HeartRate, _restingHeartRate + (8 * DailyRhythm(timeMs)) + (timeMs < _exerciseUntilMs ? 55 : 0) + Gaussian(2)),
        };
    }

    /// <summary>-1 at 4 am, +1 at 4 pm; worked out again once <paramref name="timeMs"/> is a minute from the last time it was.</summary>
    private double DailyRhythm(long timeMs)
    {
        if (double.IsNaN(_rhythm) || Math.Abs(timeMs - _rhythmAtMs) > 60_000)
        {
            var hours = timeMs / 3_600_000.0 % 24;
            _rhythm = -Math.Cos((hours - 4) / 24 * 2 * Math.PI);
            _rhythmAtMs = timeMs;
        }

        return _rhythm;
    }

    private double Gaussian(double deviation)
    {
        if (!double.IsNaN(_spareNormal))
        {
            var spare = _spareNormal;
            _spareNormal = double.NaN;
            return deviation * spare;
        }

        var u1 = 1.0 - _random.NextDouble();
        var u2 = _random.NextDouble();
        var radius = Math.Sqrt(-2 * Math.Log(u1));
        var (sin, cos) = Math.SinCos(2 * Math.PI * u2);
        _spareNormal = radius * sin;
        return deviation * radius * cos;
    }
}
