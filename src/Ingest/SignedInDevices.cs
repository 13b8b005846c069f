using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;

namespace Telemetry.Ingest;

/// <summary>
/// The devices whose tokens signed in since the server started, each with a keyed hash of its token's secret (the key
/// drawn at start, so the hashes mean nothing elsewhere) and when it last signed in: whether a token is worth asking the
/// device registry about while its address is held (see <see cref="DeviceAuthenticator"/>), never whether it is right.
/// Bounded: beyond <c>capacity</c> devices, the half that signed in least lately are forgotten, and remembered again as
/// they next sign in. Thread-safe.
/// </summary>
public sealed class SignedInDevices(TimeProvider timeProvider, int capacity = SignedInDevices.DefaultCapacity)
{
    /// <summary>Devices remembered at most, by default.</summary>
    public const int DefaultCapacity = 200_000;

    private readonly ConcurrentDictionary<string, SignedIn> _devices = new(StringComparer.Ordinal);
    private readonly byte[] _key = RandomNumberGenerator.GetBytes(32);
    private readonly Lock _forgetting = new();

    /// <summary>How many devices are remembered.</summary>
    public int Count => _devices.Count;

    /// <summary>Whether <paramref name="secret"/> is the one <paramref name="deviceId"/> last signed in with.</summary>
    public bool SignedInWith(string deviceId, string secret) =>
        _devices.TryGetValue(deviceId, out var known) && known.Fingerprint == Fingerprint(secret);

    /// <summary>Remembers that <paramref name="deviceId"/> signed in with <paramref name="secret"/>, now.</summary>
    public void SignedInNow(string deviceId, string secret)
    {
        if (!_devices.ContainsKey(deviceId) && _devices.Count >= capacity)
        {
            ForgetLeastLately();
        }

        _devices[deviceId] = new SignedIn(Fingerprint(secret), timeProvider.GetTimestamp());
    }

    /// <summary>
    /// <paramref name="secret"/> was refused for <paramref name="deviceId"/>: when it is the one the device signed in
    /// with (rotated or revoked since), the device is forgotten; another (a wrong token) leaves it remembered.
    /// </summary>
    public void Refused(string deviceId, string secret)
    {
        if (_devices.TryGetValue(deviceId, out var known) && known.Fingerprint == Fingerprint(secret))
        {
            _devices.TryRemove(new KeyValuePair<string, SignedIn>(deviceId, known));
        }
    }

    /// <summary>Forgets the half of the devices that signed in least lately (one caller at a time; rare).</summary>
    private void ForgetLeastLately()
    {
        lock (_forgetting)
        {
            if (_devices.Count < capacity)
            {
                return;
            }

            var seen = _devices.Select(entry => entry.Value.At).ToArray();
            Array.Sort(seen);
            var before = seen[(seen.Length - 1) / 2];
            foreach (var entry in _devices)
            {
                if (entry.Value.At <= before)
                {
                    _devices.TryRemove(entry);
                }
            }
        }
    }

    private ulong Fingerprint(string secret) =>
        BinaryPrimitives.ReadUInt64LittleEndian(HMACSHA256.HashData(_key, Encoding.UTF8.GetBytes(secret)));

    /// <summary>A device's token as it last signed in: its secret's keyed hash, and when (<see cref="TimeProvider.GetTimestamp"/>).</summary>
    private readonly record struct SignedIn(ulong Fingerprint, long At);
}
