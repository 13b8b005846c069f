namespace Telemetry.Api.Patients;

/// <summary>A patient's vital summarised per window at one resolution.</summary>
public sealed record Trend(string PatientId, string Kind, string Unit, string Resolution, IReadOnlyList<TrendPoint> Points);
