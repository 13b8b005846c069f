namespace Telemetry.Api.Patients;

/// <summary>The latest of each vital a patient has.</summary>
public sealed record LiveView(string PatientId, IReadOnlyList<LiveVitalView> Vitals);

/// <summary>One vital's latest value with its unit and LOINC code, and the minute it falls in.</summary>
public sealed record LiveVitalView(string Kind, string Loinc, string Unit, double Value, DateTimeOffset Time, TrendPoint CurrentMinute);
