using Telemetry.Core;
using Telemetry.Core.Devices;
using Telemetry.Core.Grains;

namespace Telemetry.Ingest;

/// <summary>Checks a device token and finds the patient the device is bound to. The patient never comes from the device.</summary>
public sealed class DeviceAuthenticator(IGrainFactory grains)
{
    /// <summary>
    /// The device the token belongs to, or null when the token is malformed, names another device than
    /// <paramref name="claimedDeviceId"/> (when given), or does not match the device's secret.
    /// </summary>
    public async Task<DeviceIdentity?> AuthenticateAsync(string token, string? claimedDeviceId = null)
    {
        if (!DeviceToken.TryParse(token, out var deviceId, out var secret)
            || !Identifier.IsValid(deviceId)
            || (claimedDeviceId is not null && !string.Equals(claimedDeviceId, deviceId, StringComparison.Ordinal)))
        {
            return null;
        }

        var patientId = await grains.GetGrain<IDeviceGrain>(deviceId).AuthenticateAsync(secret);
        return patientId is null ? null : new DeviceIdentity(deviceId, patientId);
    }

    /// <summary>
    /// The device a verified client certificate names, or null when it is not provisioned or was revoked: revoking a
    /// device's token refuses its certificate too, until an admin issues it a new token.
    /// </summary>
    public async Task<DeviceIdentity?> AuthenticateCertificateAsync(string deviceId)
    {
        var binding = await grains.GetGrain<IDeviceGrain>(deviceId).GetAsync();
        return binding is { RevokedAt: null } ? new DeviceIdentity(deviceId, binding.PatientId) : null;
    }
}
