namespace Telemetry.Ingest;

/// <summary>One refusal: when, over which protocol, and why (a malformed payload, or the readings refused and for what).</summary>
public sealed record DeviceReject(DateTimeOffset Time, string Protocol, string Reason);
