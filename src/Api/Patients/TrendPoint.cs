namespace Telemetry.Api.Patients;

/// <summary>One window of a trend, in the vital's canonical unit: its readings' count, least, greatest, mean and sum (the window's total of steps or hours of sleep).</summary>
public sealed record TrendPoint(DateTimeOffset Start, long Count, double Min, double Max, double Mean, double Sum);
