namespace Telemetry.Api.Patients;

/// <summary>Several vitals of one patient over the same range, each at the resolution it was read at.</summary>
public sealed record TrendSet(string PatientId, DateTimeOffset From, DateTimeOffset To, IReadOnlyList<Trend> Series);
