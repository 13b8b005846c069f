using System.Net;
using Microsoft.Extensions.Options;
using Telemetry.Core;
using Telemetry.Core.Devices;
using Telemetry.Core.Grains;

namespace Telemetry.Ingest;

/// <summary>Checks a device token and finds the patient the device is bound to. The patient never comes from the device.</summary>
/// <remarks>
/// Every token checked asks the device's grain, activating it and reading its state: so an address whose tokens are
/// refused more than <see cref="IngestOptions.FailedDeviceSignInsPerMinute"/> times a minute is held for
/// <see cref="IngestOptions.DeviceSignInLockout"/> without asking (<see cref="DeviceSignInsHeldException"/>), on
/// every protocol. A revoked device retrying now and then behind a shared address does not come near it. A token that
/// signed in before is still asked about while its address is held: a device presenting wrong tokens behind a
/// carrier's address holds back devices new there, not every phone behind it that was already sending.
/// </remarks>
public sealed class DeviceAuthenticator(IGrainFactory grains, IOptions<IngestOptions> options, TimeProvider timeProvider)
{
    private readonly FailedSignIns _failures = new(
        () => options.Value.FailedDeviceSignInsPerMinute, () => options.Value.DeviceSignInLockout, timeProvider);

    private readonly SignedInDevices _signedIn = new(timeProvider);

    /// <summary>
    /// The device the token belongs to, or null when the token is malformed, names another device than
    /// <paramref name="claimedDeviceId"/> (when given), or does not match the device's secret. A refusal counts against
    /// <paramref name="from"/>, the client's address (when known); one held for too many is a
    /// <see cref="DeviceSignInsHeldException"/>, the token not looked at unless it signed in before.
    /// </summary>
    public async Task<DeviceIdentity?> AuthenticateAsync(string token, string? claimedDeviceId = null, IPAddress? from = null)
    {
        var wellFormed = DeviceToken.TryParse(token, out var deviceId, out var secret)
            && Identifier.IsValid(deviceId)
            && (claimedDeviceId is null || string.Equals(claimedDeviceId, deviceId, StringComparison.Ordinal));
        if (from is not null && _failures.IsLockedOut(from, out var retryAfter) && !(wellFormed && _signedIn.SignedInWith(deviceId, secret)))
        {
            throw new DeviceSignInsHeldException(retryAfter);
        }

        var identity = wellFormed
            ? ToIdentity(await AskAsync(() => grains.GetGrain<IDeviceGrain>(deviceId).AuthenticateAsync(new DeviceSecret(secret))))
            : null;
        if (identity is not null)
        {
            _signedIn.SignedInNow(deviceId, secret);
            return identity;
        }

        if (wellFormed)
        {
            _signedIn.Refused(deviceId, secret);
        }

        if (from is not null)
        {
            _failures.Failed(from);
        }

        return null;
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
