namespace Telemetry.Api.Patients;

/// <summary>A page of the patients the caller may read, each with their latest vitals; <c>next</c> continues the list.</summary>
public sealed record PatientList(IReadOnlyList<LiveView> Patients, string? Next);
