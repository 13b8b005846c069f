using System.Collections.Concurrent;
using Microsoft.Extensions.Options;

namespace Telemetry.Ingest;

/// <summary>
/// Per-device limits on messages (MQTT publishes, gRPC batches) and bulk uploads: a token bucket per device, so one
/// misbehaving device cannot crowd out the others. A refused message is answered (MQTT 5 0x97, gRPC
/// ResourceExhausted, HTTP 429) and never stored; the device sends it again later.
/// </summary>
public sealed class DeviceRateLimiter(IOptions<IngestOptions> options, TimeProvider timeProvider)
{
    private readonly ConcurrentDictionary<string, Bucket> _messages = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Bucket> _uploads = new(StringComparer.Ordinal);

    /// <summary>Takes one message from the device's allowance; false when it is spent.</summary>
    public bool TryTakeMessage(string deviceId) =>
        Take(_messages, deviceId, options.Value.MaxMessagesPerSecondPerDevice, burstSeconds: 2);

    /// <summary>Takes one bulk upload from the device's allowance; false when it is spent.</summary>
    public bool TryTakeUpload(string deviceId) =>
        Take(_uploads, deviceId, options.Value.MaxUploadsPerMinutePerDevice / 60.0, burstSeconds: 60);

    private bool Take(ConcurrentDictionary<string, Bucket> buckets, string deviceId, double perSecond, double burstSeconds)
    {
        var now = timeProvider.GetTimestamp();
        var bucket = buckets.GetOrAdd(deviceId, static (_, state) => new Bucket(state.Capacity, state.Now), (Capacity: perSecond * burstSeconds, Now: now));
        return bucket.TryTake(perSecond, perSecond * burstSeconds, now, timeProvider.TimestampFrequency);
    }

    private sealed class Bucket(double tokens, long timestamp)
    {
        private readonly Lock _lock = new();
        private double _tokens = tokens;
        private long _timestamp = timestamp;

        public bool TryTake(double perSecond, double capacity, long now, long frequency)
        {
            lock (_lock)
            {
                _tokens = Math.Min(capacity, _tokens + ((now - _timestamp) * perSecond / frequency));
                _timestamp = now;
                if (_tokens < 1)
                {
                    return false;
                }

                _tokens -= 1;
                return true;
            }
        }
    }
}
