namespace Telemetry.Api.Devices;

/// <summary>The body of <c>POST /api/devices</c>.</summary>
public sealed record ProvisionDeviceRequest(string? DeviceId, string? PatientId);
