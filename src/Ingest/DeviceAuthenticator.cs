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

        return ToIdentity(await AskAsync(() => grains.GetGrain<IDeviceGrain>(deviceId).AuthenticateAsync(new DeviceSecret(secret))));
    }

    /// <summary>
    /// The device a verified client certificate names, or null when it is not provisioned or was revoked: revoking a
    /// device's token refuses its certificate too, until an admin issues it a new token.
    /// </summary>
    public Task<DeviceIdentity?> AuthenticateCertificateAsync(string deviceId) => IdentifyAsync(deviceId);

    /// <summary>
    /// The device another party has authenticated (a client certificate's name, the external broker's sign-in and topic
    /// rules), or null when it is not provisioned or was revoked.
    /// </summary>
    public async Task<DeviceIdentity?> IdentifyAsync(string deviceId) =>
        ToIdentity(await AskAsync(() => grains.GetGrain<IDeviceGrain>(deviceId).GetAsync()));

    /// <summary>
    /// Asks the device registry; a registry that cannot answer (its storage away, a grain call timing out) is a
    /// <see cref="DeviceRegistryUnavailableException"/>, which each protocol answers as "try again later", not as a
    /// wrong token or a server error.
    /// </summary>
    private static async Task<DeviceBinding?> AskAsync(Func<Task<DeviceBinding?>> ask)
    {
        try
        {
            return await ask();
        }
        catch (Exception exception) when (exception is not OperationCanceledException)
        {
            throw new DeviceRegistryUnavailableException(exception);
        }
    }

    /// <summary>
    /// False when the device's credentials changed (rotated or revoked) since <paramref name="identity"/> signed in.
    /// A connection checks this once it is registered, so a change that raced its sign-in still ends it.
    /// </summary>
    public async Task<bool> IsCurrentAsync(DeviceIdentity identity) =>
        ToIdentity(await AskAsync(() => grains.GetGrain<IDeviceGrain>(identity.DeviceId).GetAsync())) == identity;

    private static DeviceIdentity? ToIdentity(DeviceBinding? binding) =>
        binding is { RevokedAt: null } ? new DeviceIdentity(binding.DeviceId, binding.PatientId, binding.RotatedAt ?? binding.ProvisionedAt) : null;
}
