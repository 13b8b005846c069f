using System.Collections.Concurrent;

namespace Telemetry.Ingest;

/// <summary>
/// The latest refusals per device, with their reasons, for senders that cannot read one (MQTT 3.1.1 PUBACKs carry no
/// reason code) and for whoever is integrating a device. Bounded: the last <see cref="PerDevice"/> per device, for at
/// most <see cref="MaxDevices"/> devices. Kept in memory: it is a diagnostic, and restarts clear it.
/// </summary>
public sealed class DeviceRejectLog(TimeProvider timeProvider)
{
    public const int PerDevice = 50;
    public const int MaxDevices = 100_000;

    private readonly ConcurrentDictionary<string, Queue<DeviceReject>> _byDevice = new(StringComparer.Ordinal);

    public void Record(string deviceId, string protocol, string reason)
    {
        if (!_byDevice.TryGetValue(deviceId, out var entries))
        {
            if (_byDevice.Count >= MaxDevices)
            {
                return;
            }

            entries = _byDevice.GetOrAdd(deviceId, _ => new Queue<DeviceReject>());
        }

        lock (entries)
        {
            if (entries.Count == PerDevice)
            {
                entries.Dequeue();
            }

            entries.Enqueue(new DeviceReject(timeProvider.GetUtcNow(), protocol, reason));
        }
    }

    /// <summary>The device's latest refusals, newest first.</summary>
    public IReadOnlyList<DeviceReject> Latest(string deviceId)
    {
        if (!_byDevice.TryGetValue(deviceId, out var entries))
        {
            return [];
        }

        lock (entries)
        {
            return [.. entries.Reverse()];
        }
    }
}
