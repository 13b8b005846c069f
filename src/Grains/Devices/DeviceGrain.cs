using System.Security.Cryptography;
using System.Text;
using Orleans.Runtime;
using Telemetry.Core.Devices;
using Telemetry.Core.Grains;

namespace Telemetry.Grains.Devices;

/// <summary>Keeps one device's binding to its patient and checks its secret against a salted SHA-256 hash.</summary>
/// <remarks>
/// The secret is 256 random bits made by the server, so a single salted SHA-256 is as strong as a slow password hash
/// would be: there is no dictionary to guess from.
/// </remarks>
public sealed class DeviceGrain(
    [PersistentState("device", GrainStorageNames.Durable)] IPersistentState<DeviceState> state,
    TimeProvider timeProvider) : Grain, IDeviceGrain
{
    private const int SaltBytes = 16;

    public async Task<string?> ProvisionAsync(string patientId)
    {
        if (state.State.PatientId is not null)
        {
            return null;
        }

        var secret = DeviceToken.NewSecret();
        var salt = RandomNumberGenerator.GetBytes(SaltBytes);
        state.State.PatientId = patientId;
        state.State.Salt = salt;
        state.State.SecretHash = Hash(salt, secret);
        state.State.ProvisionedAt = timeProvider.GetUtcNow();
        try
        {
            await state.WriteStateAsync();
        }
        catch
        {
            // Nobody received this secret: leave the device unprovisioned, so provisioning can be tried again. The write may
            // have landed all the same (a reply lost): the grain goes once this call ends, so the next call reads what
            // the storage holds (then provisioned: a rotation issues its token).
            state.State = new DeviceState();
            DeactivateOnIdle();
            throw;
        }

        return secret;
    }

    public async Task<string?> RotateAsync()
    {
        if (state.State.PatientId is null)
        {
            return null;
        }

        var secret = DeviceToken.NewSecret();
        var salt = RandomNumberGenerator.GetBytes(SaltBytes);
        var previous = (state.State.Salt, state.State.SecretHash, state.State.RevokedAt, state.State.RotatedAt);
        (state.State.Salt, state.State.SecretHash, state.State.RevokedAt, state.State.RotatedAt) = (salt, Hash(salt, secret), null, timeProvider.GetUtcNow());
        try
        {
            await state.WriteStateAsync();
        }
        catch
        {
            // Nobody received the new secret: the old one stays in force, unless the write landed all the same (a reply
            // lost): the grain goes once this call ends, so the next sign-in reads what the storage holds.
            (state.State.Salt, state.State.SecretHash, state.State.RevokedAt, state.State.RotatedAt) = previous;
            DeactivateOnIdle();
            throw;
        }

        return secret;
    }

    public async Task<bool> RevokeAsync()
    {
        if (state.State.PatientId is null)
        {
            return false;
        }

        state.State.RevokedAt ??= timeProvider.GetUtcNow();
        try
        {
            await state.WriteStateAsync();
        }
        catch
        {
            // Answered as failed, but the write may have landed (a reply lost): the device stays refused while this
            // grain lives, and the grain goes once this call ends, so the next sign-in reads what the storage holds.
            DeactivateOnIdle();
            throw;
        }

        return true;
    }

    public Task<DeviceBinding?> AuthenticateAsync(DeviceSecret secret)
    {
        var current = state.State;
        if (current.PatientId is null)
        {
            // Any id a sign-in names activates its grain: one never provisioned is not kept in memory for it.
            DeactivateOnIdle();
            return Task.FromResult<DeviceBinding?>(null);
        }

        if (current.RevokedAt is not null
            || !CryptographicOperations.FixedTimeEquals(Hash(current.Salt, secret.Value), current.SecretHash))
        {
            return Task.FromResult<DeviceBinding?>(null);
        }

        return GetAsync();
    }

    public Task<DeviceBinding?> GetAsync() => Task.FromResult(
        state.State.PatientId is { } patientId
            ? new DeviceBinding(this.GetPrimaryKeyString(), patientId, state.State.ProvisionedAt, state.State.RotatedAt, state.State.RevokedAt)
            : null);

    private static byte[] Hash(byte[] salt, string secret)
    {
        var secretBytes = Encoding.UTF8.GetBytes(secret);
        var input = new byte[salt.Length + secretBytes.Length];
        salt.CopyTo(input, 0);
        secretBytes.CopyTo(input, salt.Length);
        return SHA256.HashData(input);
    }
}
