namespace Telemetry.Api.Devices;

/// <summary>A quarantined reading as an integrator reads it: the vital, when, the value in the vital's unit, and why.</summary>
public sealed record QuarantinedReadingView(string Kind, DateTimeOffset Time, double Value, string Unit, string Reason);
