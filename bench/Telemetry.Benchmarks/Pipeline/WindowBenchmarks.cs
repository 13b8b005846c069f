using BenchmarkDotNet.Attributes;
using Telemetry.Core.Alerts;
using Telemetry.Core.Readings;
using Telemetry.Core.Rollups;
using Telemetry.Core.Vitals;
using Telemetry.Grains.Alerts;
using Telemetry.Grains.Patients;

namespace Telemetry.Benchmarks.Pipeline;

/// <summary>
/// What a patient's grain does per reading, without the grain: folding into the open minute, hour and day (closing
/// windows as time moves on, each closed window kept as a rollup for the store, as the grain does), and running the
/// adult default alert rules.
/// </summary>
[MemoryDiagnoser]
public class WindowBenchmarks
{
    private const int Readings = 3_600;

    private readonly List<Rollup> _closed = new(Readings);
    private readonly VitalReading[] _everySecond = new VitalReading[Readings];
    private readonly VitalReading[] _everyMinute = new VitalReading[Readings];
    private ClosedWindows _close = null!;
    private AlertEngine _alerts = null!;
    private long _now;

    [GlobalSetup]
    public void Setup()
    {
        _close = new ClosedWindows(_closed);
        var hour = Resolution.Hour.WindowStart(DateTimeOffset.UtcNow.AddHours(-2).ToUnixTimeMilliseconds());
        for (var i = 0; i < Readings; i++)
        {
            _everySecond[i] = new VitalReading(VitalKind.HeartRate, hour + (i * 1_000L), 60 + (i % 40));
            _everyMinute[i] = new VitalReading(VitalKind.HeartRate, hour + (i * 60_000L), 60 + (i % 40));
        }

        AlertRuleTemplates.TryGet(AlertRuleTemplates.AdultDefault, out var rules);
        _alerts = new AlertEngine("patient-1", new AlertState { Rules = rules });
        _now = _everySecond[^1].TimestampMs + 1_000;
    }

    /// <summary>An hour of 1 Hz heart rate: a minute closes every 60 readings, the hour at the end.</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = Readings)]
    public int Fold_one_reading_a_second() => Fold(_everySecond);

    /// <summary>Every reading closes a minute (and every 60th an hour): the cost of closing windows.</summary>
    [Benchmark(OperationsPerInvoke = Readings)]
    public int Fold_one_reading_a_minute() => Fold(_everyMinute);

    /// <summary>
    /// The adult default rules (eleven: thresholds, NEWS2, no data, implausible) on readings in range. Each call goes on
    /// an hour from the last, each reading judged as it arrives: the rules judge a reading only once, and only while it
    /// is news (15 minutes), so the same readings again would be skipped, not judged.
    /// </summary>
    [Benchmark(OperationsPerInvoke = Readings)]
    public int Alert_rules_one_reading_a_second()
    {
        var start = _now;
        for (var i = 0; i < Readings; i++)
        {
            var at = start + (i * 1_000L);
            _alerts.Observe(new VitalReading(VitalKind.HeartRate, at, 60 + (i % 40)), at);
        }

        _now = start + (Readings * 1_000L);
        var events = _alerts.State.Outbox.Count;
        _alerts.State.Outbox.Clear();
        return events;
    }

    private int Fold(VitalReading[] readings)
    {
        _closed.Clear();
        var windows = new VitalWindows(VitalKind.HeartRate);
        foreach (var reading in readings)
        {
            windows.Add(reading.TimestampMs, reading.Value, _close);
        }

        return _closed.Count;
    }

    private sealed class ClosedWindows(List<Rollup> closed) : IClosedWindows
    {
        public void Add(VitalKind kind, Resolution resolution, RollupWindow window) => closed.Add(new Rollup("patient-1", kind, resolution, window));
    }
}
