using System.Diagnostics.Metrics;
using Telemetry.Core.Alerts;

namespace Telemetry.Grains;

/// <summary>The grains' metrics.</summary>
public sealed class GrainInstruments
{
    public const string MeterName = "Telemetry";
    public const string ActivePatients = "telemetry.patients.active";

    public const string AlertEvents = "telemetry.alerts.events";

    private readonly UpDownCounter<long> _activePatients;
    private readonly Counter<long> _alertEvents;

    public GrainInstruments(IMeterFactory meterFactory)
    {
        var meter = meterFactory.Create(MeterName);
        _activePatients = meter.CreateUpDownCounter<long>(ActivePatients, unit: "{patient}", description: "Patient grains active in this process.");
        _alertEvents = meter.CreateCounter<long>(AlertEvents, unit: "{event}", description: "Alert events (raised, escalated, cleared, ...) by type and priority.");
    }

    public void AlertEventsStored(IReadOnlyList<AlertEvent> events)
    {
        foreach (var item in events)
        {
            _alertEvents.Add(1, new("type", item.Type.ToString()), new("priority", item.Alert.Priority.ToString()), new("category", item.Alert.Category.ToString()));
        }
    }

    public void PatientActivated() => _activePatients.Add(1);

    public void PatientDeactivated() => _activePatients.Add(-1);
}
