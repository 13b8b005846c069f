using System.Diagnostics.Metrics;
using Telemetry.Core.Alerts;

namespace Telemetry.Grains;

/// <summary>The grains' metrics.</summary>
public sealed class GrainInstruments
{
    public const string MeterName = "Telemetry";
    public const string ActivePatients = "telemetry.patients.active";

    public const string AlertEvents = "telemetry.alerts.events";
    public const string AlertDelay = "telemetry.alerts.delay";

    private readonly UpDownCounter<long> _activePatients;
    private readonly Counter<long> _alertEvents;
    private readonly Histogram<double> _alertDelay;

    // Patient grains active here whose open windows are not written yet (see PatientsHoldingOpenWindows).
    private int _holdingOpenWindows;

    public GrainInstruments(IMeterFactory meterFactory)
    {
        var meter = meterFactory.Create(MeterName);
        _activePatients = meter.CreateUpDownCounter<long>(ActivePatients, unit: "{patient}", description: "Patient grains active in this process.");
        _alertEvents = meter.CreateCounter<long>(AlertEvents, unit: "{event}", description: "Alert events (raised, escalated, cleared, ...) by type and priority.");
        // Seconds; buckets close together from 5 to 100 ms, where an alert's latency falls on a loaded server, so that a
        // percentile read from them is close to the true one.
        _alertDelay = meter.CreateHistogram(AlertDelay, "s",
            "Per alert event a reading raised or cleared (by type), from the hand-over of its batch to the ingest pipeline to the event's hand-off to subscribers (the reading's commit, the grain's judgement, the alert's own write): the server's part of an alert's latency.",
            tags: null, advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] });
    }

    public void AlertEventsStored(IReadOnlyList<AlertEvent> events)
    {
        foreach (var item in events)
        {
            _alertEvents.Add(1, new("type", item.Type.ToString()), new("priority", item.Alert.Priority.ToString()), new("category", item.Alert.Category.ToString()));
        }
    }

    /// <summary>Records <paramref name="events"/>, made by readings handed over <paramref name="delay"/> ago, as handed off now, by type (raised, cleared).</summary>
    public void AlertEventsHandedOff(IEnumerable<AlertEvent> events, TimeSpan delay)
    {
        foreach (var item in events)
        {
            _alertDelay.Record(Math.Max(0, delay.TotalSeconds), new KeyValuePair<string, object?>("type", item.Type.ToString()));
        }
    }

    /// <summary>
    /// Patient grains in this process holding open windows not written yet: from their activation until their
    /// deactivation has written them. Above zero once the server has stopped, its shutdown cut a deactivation short or
    /// a write failed, and the windows are left for the next start to recover (<see cref="Core.Storage.ICommitLog.OpenWindowsLeft"/>).
    /// </summary>
    public int PatientsHoldingOpenWindows => Volatile.Read(ref _holdingOpenWindows);

    public void OpenWindowsHeld() => Interlocked.Increment(ref _holdingOpenWindows);

    public void OpenWindowsWritten() => Interlocked.Decrement(ref _holdingOpenWindows);

    public void PatientActivated() => _activePatients.Add(1);

    public void PatientDeactivated() => _activePatients.Add(-1);
}
