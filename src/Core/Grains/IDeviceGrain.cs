namespace Telemetry.Core.Grains;

/// <summary>A device's binding to its patient and its secret (kept only as a salted hash). Keyed by device id.</summary>
[Alias("telemetry.device")]
public interface IDeviceGrain : IGrainWithStringKey
{
    /// <summary>Binds the device to <paramref name="patientId"/> and returns its new secret, or null when the device is already provisioned.</summary>
    [Alias("provision")]
    Task<string?> ProvisionAsync(string patientId);

    /// <summary>The patient this device writes for, when <paramref name="secret"/> is the device's secret; otherwise null.</summary>
    [Alias("authenticate")]
    Task<string?> AuthenticateAsync(string secret);

    /// <summary>The device's binding, or null when it was never provisioned.</summary>
    [Alias("get")]
    Task<DeviceBinding?> GetAsync();
}
