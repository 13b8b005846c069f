using Telemetry.Core;
using Telemetry.Core.Storage;

namespace Telemetry.Api.Patients;

/// <summary>Which patient ids a write that makes or binds a patient's record (a device, a care team, alert rules) may name.</summary>
public static class PatientIds
{
    /// <summary>
    /// A FHIR id (<see cref="Identifier.IsValidPatientId"/>), or a patient the server already knows from before patient
    /// ids had to be (one with <c>_</c> or <c>:</c>, in the shape every id takes), whose record stays in use.
    /// </summary>
    public static async ValueTask<bool> MayNameAsync(string? patientId, IPatientDirectory directory, CancellationToken cancellationToken) =>
        Identifier.IsValidPatientId(patientId)
        || (Identifier.IsValid(patientId) && await directory.ContainsAsync(patientId!, cancellationToken));
}
