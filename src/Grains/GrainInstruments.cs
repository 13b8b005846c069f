using System.Diagnostics.Metrics;

namespace Telemetry.Grains;

/// <summary>The grains' metrics.</summary>
public sealed class GrainInstruments
{
    public const string MeterName = "Telemetry";
    public const string ActivePatients = "telemetry.patients.active";

    private readonly UpDownCounter<long> _activePatients;

    public GrainInstruments(IMeterFactory meterFactory)
    {
        var meter = meterFactory.Create(MeterName);
        _activePatients = meter.CreateUpDownCounter<long>(ActivePatients, unit: "{patient}", description: "Patient grains active in this process.");
    }

    public void PatientActivated() => _activePatients.Add(1);

    public void PatientDeactivated() => _activePatients.Add(-1);
}
