using Telemetry.Ingest;

namespace Telemetry.Api.Devices;

/// <summary>The answer of <c>GET /api/devices/{deviceId}/rejects</c>: the latest refusals and quarantined readings, newest first.</summary>
public sealed record DeviceRejects(string DeviceId, IReadOnlyList<DeviceReject> Rejects, IReadOnlyList<QuarantinedReadingView> Quarantined);
