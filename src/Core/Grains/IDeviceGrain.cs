using Telemetry.Core.Devices;

namespace Telemetry.Core.Grains;

/// <summary>A device's binding to its patient and its secret (kept only as a salted hash). Keyed by device id.</summary>
[Alias("telemetry.device")]
public interface IDeviceGrain : IGrainWithStringKey
{
    /// <summary>Binds the device to <paramref name="patientId"/> and returns its new secret, or null when the device is already provisioned.</summary>
    [Alias("provision")]
    Task<string?> ProvisionAsync(string patientId);

    /// <summary>
    /// The device's binding (the patient it writes for, and when its credentials last changed), when
    /// <paramref name="secret"/> is the device's secret and it is not revoked; otherwise null.
    /// </summary>
    [Alias("authenticate")]
    Task<DeviceBinding?> AuthenticateAsync(DeviceSecret secret);

    /// <summary>
    /// Replaces the device's secret with a new one and returns it (the old one stops working at once, and a revoked
    /// device works again with the new one); null when the device was never provisioned.
    /// </summary>
    [Alias("rotate")]
    Task<string?> RotateAsync();

    /// <summary>Makes the device's secret stop working until it gets a new one; false when the device was never provisioned.</summary>
    [Alias("revoke")]
    Task<bool> RevokeAsync();

    /// <summary>The device's binding, or null when it was never provisioned.</summary>
    [Alias("get")]
    Task<DeviceBinding?> GetAsync();
}
