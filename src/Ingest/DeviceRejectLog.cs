using System.Collections.Concurrent;

namespace Telemetry.Ingest;

/// <summary>
/// The latest refusals per device, with their reasons, for senders that cannot read one (MQTT 3.1.1 PUBACKs carry no
/// reason code) and for whoever is integrating a device. Bounded: the last <see cref="PerDevice"/> per device, for at
/// most <see cref="MaxDevices"/> devices; when that many have been refused, the tenth whose latest refusal is oldest
/// are forgotten, so a device refused now is always recorded. Kept in memory: it is a diagnostic, and restarts clear it.
/// </summary>
public sealed class DeviceRejectLog(TimeProvider timeProvider)
{
    public const int PerDevice = 50;
    public const int MaxDevices = 100_000;

    private readonly ConcurrentDictionary<string, Entries> _byDevice = new(StringComparer.Ordinal);
    private readonly Lock _forgetting = new();

    /// <summary>Records that a commit refused <paramref name="conflicts"/> of the device's readings as conflicts (nothing when none).</summary>
    public void RecordConflicts(string deviceId, string protocol, int conflicts)
    {
        if (conflicts > 0)
        {
            Record(deviceId, protocol, Pipeline.CommitResult.DescribeConflicts(conflicts));
        }
    }

    public void Record(string deviceId, string protocol, string reason)
    {
        var now = timeProvider.GetUtcNow();
        if (!_byDevice.TryGetValue(deviceId, out var entries))
        {
            if (_byDevice.Count >= MaxDevices)
            {
                ForgetOldest();
            }

            // Made as refused now, so that forgetting under way elsewhere does not take it for the oldest.
            entries = _byDevice.GetOrAdd(deviceId, _ => new Entries { LatestTicks = now.UtcTicks });
        }

        lock (entries)
        {
            if (entries.Queue.Count == PerDevice)
            {
                entries.Queue.Dequeue();
            }

            entries.Queue.Enqueue(new DeviceReject(now, protocol, reason));
            entries.LatestTicks = now.UtcTicks;
        }

        // Forgotten elsewhere between the look-up and now (it had been refused longest ago): back it goes.
        _byDevice.TryAdd(deviceId, entries);
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
            return [.. entries.Queue.Reverse()];
        }
    }

    /// <summary>
    /// Forgets the tenth of the devices whose latest refusal is oldest. One thread does it at a time; the others go on
    /// meanwhile, so the log may hold a few devices over the bound for that while.
    /// </summary>
    private void ForgetOldest()
    {
        if (!_forgetting.TryEnter())
        {
            return;
        }

        try
        {
            if (_byDevice.Count < MaxDevices)
            {
                return;
            }

            var oldest = _byDevice.Select(device => (device.Key, Ticks: Volatile.Read(ref device.Value.LatestTicks)))
                .OrderBy(device => device.Ticks)
                .Take(MaxDevices / 10)
                .ToList();
            foreach (var (deviceId, _) in oldest)
            {
                _byDevice.TryRemove(deviceId, out _);
            }
        }
        finally
        {
            _forgetting.Exit();
        }
    }

    /// <summary>A device's latest refusals, oldest first, and when the latest was.</summary>
    private sealed class Entries
    {
        public readonly Queue<DeviceReject> Queue = new();
        public long LatestTicks;
    }
}
