using System.Buffers;
using System.Collections.Concurrent;
using System.IO.Hashing;

namespace Telemetry.Ingest.Mqtt;

/// <summary>
/// When each device's recent SenML payloads with relative times (times below 2^28 s, or none: "now") were first read.
/// SenML resolves such times against the payload's arrival, so a QoS 1 publish sent again after its PUBACK was lost
/// would come out at new times and be stored twice. A publish the device marks as sent again (MQTT's DUP flag) whose
/// payload and packet identifier are one of these is read as of its first arrival instead, so its readings come out
/// the same and are known as repeats. Only a DUP publish is matched, and only by both: a device that sends the same
/// payload again as a new message (the same value a minute later, with no time) gets a new reading, and so does that
/// new message when it is lost on the way and sent again (a resend keeps its packet identifier; a new message takes
/// another while the first's may still be unanswered). A client that gives every message the same identifier (one in
/// flight at a time) and loses such a second message on the way has its resend taken for the first's: a device that
/// must not lose one sends times, or a <c>seq</c>. Kept for <c>keepFor</c>, the last <see cref="PerDevice"/> per
/// device; a device silent that long is forgotten.
/// </summary>
public sealed class SenMlResendClock(TimeSpan keepFor, TimeProvider timeProvider)
{
    public const int PerDevice = 8;

    private readonly long _keepForMs = (long)keepFor.TotalMilliseconds;
    private readonly ConcurrentDictionary<string, Recent> _devices = new(StringComparer.Ordinal);
    private long _sweepDueMs;

    /// <summary>Devices remembered now.</summary>
    public int Devices => _devices.Count;

    /// <summary>
    /// When the payload, sent again under packet identifier <paramref name="packetId"/>, was first read; null when it
    /// was not (or long ago).
    /// </summary>
    public long? FirstReadAt(string deviceId, in ReadOnlySequence<byte> payload, ushort packetId)
    {
        if (!_devices.TryGetValue(deviceId, out var recent))
        {
            return null;
        }

        var hash = Hash(payload);
        var expired = timeProvider.GetUtcNow().ToUnixTimeMilliseconds() - _keepForMs;
        lock (recent)
        {
            // One entry per payload and identifier, its latest reading (see Remember).
            foreach (var (entryHash, entryPacketId, readAtMs) in recent.Entries)
            {
                if (entryHash == hash && entryPacketId == packetId && readAtMs > expired)
                {
                    return readAtMs;
                }
            }
        }

        return null;
    }

    /// <summary>Notes that the payload, sent under packet identifier <paramref name="packetId"/>, was read as of <paramref name="readAtMs"/>.</summary>
    /// <remarks>
    /// A payload read again as a new message under the same identifier (a client with one in flight at a time) replaces
    /// its entry: a resend is of the latest such message, the one that may have gone without an answer.
    /// </remarks>
    public void Remember(string deviceId, in ReadOnlySequence<byte> payload, ushort packetId, long readAtMs)
    {
        var hash = Hash(payload);
        while (true)
        {
            var recent = _devices.GetOrAdd(deviceId, static _ => new Recent());
            lock (recent)
            {
                if (recent.Forgotten)
                {
                    // Swept away meanwhile: a new entry is made.
                    continue;
                }

                recent.Entries.RemoveAll(entry => entry.Hash == hash && entry.PacketId == packetId);
                if (recent.Entries.Count == PerDevice)
                {
                    recent.Entries.RemoveAt(0);
                }

                recent.Entries.Add((hash, packetId, readAtMs));
                recent.LatestMs = readAtMs;
                break;
            }
        }

        Sweep(readAtMs);
    }

    /// <summary>
    /// Forgets the devices with nothing kept, at most once per keeping time (a walk over the devices that send SenML with
    /// relative times, on the publish that finds it due).
    /// </summary>
    private void Sweep(long nowMs)
    {
        var due = Interlocked.Read(ref _sweepDueMs);
        if (nowMs < due || Interlocked.CompareExchange(ref _sweepDueMs, nowMs + _keepForMs, due) != due)
        {
            return;
        }

        foreach (var (deviceId, recent) in _devices)
        {
            lock (recent)
            {
                // Marked under its lock, so a Remember holding it makes a new one rather than adding to one forgotten.
                if (recent.LatestMs <= nowMs - _keepForMs)
                {
                    recent.Forgotten = true;
                    _devices.TryRemove(new KeyValuePair<string, Recent>(deviceId, recent));
                }
            }
        }
    }

    private static ulong Hash(in ReadOnlySequence<byte> payload)
    {
        if (payload.IsSingleSegment)
        {
            return XxHash3.HashToUInt64(payload.FirstSpan);
        }

        var hash = new XxHash3();
        foreach (var segment in payload)
        {
            hash.Append(segment.Span);
        }

        return hash.GetCurrentHashAsUInt64();
    }

    private sealed class Recent
    {
        // Oldest first; at most PerDevice, one per payload and packet identifier.
        public List<(ulong Hash, ushort PacketId, long ReadAtMs)> Entries { get; } = new(PerDevice);

        public long LatestMs { get; set; }

        public bool Forgotten { get; set; }
    }
}
