namespace Telemetry.Api.Patients;

/// <summary>The latest of each vital a patient has.</summary>
public sealed record LiveView(string PatientId, IReadOnlyList<LiveVitalView> Vitals);
