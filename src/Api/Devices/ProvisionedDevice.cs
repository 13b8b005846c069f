namespace Telemetry.Api.Devices;

/// <summary>A newly provisioned device with its token, which is shown this once and never again.</summary>
public sealed record ProvisionedDevice(string DeviceId, string PatientId, string Token);
