using Telemetry.Core.Grains;
using Telemetry.Core.Vitals;

namespace Telemetry.Api.Patients;

/// <summary>The latest of each vital a patient has.</summary>
public sealed record LiveView(string PatientId, IReadOnlyList<LiveVitalView> Vitals)
{
    /// <summary>The patient's live picture, from their grain.</summary>
    public static async Task<LiveView> ReadAsync(IGrainFactory grains, string patientId)
    {
        var snapshot = await grains.GetGrain<IPatientGrain>(patientId).GetLiveAsync();
        var vitals = snapshot.Vitals.Select(v =>
        {
            var definition = VitalCatalogue.Get(v.Kind);
            return new LiveVitalView(definition.Name, definition.Loinc, definition.Unit, v.Value,
                DateTimeOffset.FromUnixTimeMilliseconds(v.TimestampMs), PatientEndpoints.ToPoint(v.CurrentMinute));
        }).ToList();
        return new LiveView(patientId, vitals);
    }
}
