namespace Telemetry.Api.Patients;

/// <summary>One window of a trend, in the vital's canonical unit.</summary>
public sealed record TrendPoint(DateTimeOffset Start, long Count, double Min, double Max, double Mean);
