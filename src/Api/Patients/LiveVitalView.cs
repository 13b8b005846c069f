namespace Telemetry.Api.Patients;

/// <summary>One vital's latest value with its unit and LOINC code, and the minute window it falls in.</summary>
public sealed record LiveVitalView(string Kind, string Loinc, string Unit, double Value, DateTimeOffset Time, TrendPoint CurrentMinute);
