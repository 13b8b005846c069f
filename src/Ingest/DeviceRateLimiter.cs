using System.Collections.Concurrent;
using Microsoft.Extensions.Options;

namespace Telemetry.Ingest;

/// <summary>
/// Per-device limits on messages (MQTT publishes, gRPC batches) and bulk uploads: a token bucket per device, so one
/// misbehaving device cannot crowd out the others. A refused message is answered (MQTT 5 0x97, gRPC
/// ResourceExhausted, HTTP 429) and never stored; the device sends it again later.
/// </summary>
/// <remarks>
/// A bucket left alone for its burst period has refilled: it says no more than a new one would, so it is forgotten.
/// The limiter then holds the devices that sent within the last burst period (two seconds of messages, a minute of
/// uploads), not every device it has ever seen.
/// </remarks>
public sealed class DeviceRateLimiter(IOptions<IngestOptions> options, TimeProvider timeProvider)
{
    private const double MessageBurstSeconds = 2;
    private const double UploadBurstSeconds = 60;

    private readonly Buckets _messages = new(MessageBurstSeconds, timeProvider);
    private readonly Buckets _uploads = new(UploadBurstSeconds, timeProvider);

    /// <summary>Takes one message from the device's allowance; false when it is spent.</summary>
    public bool TryTakeMessage(string deviceId) => _messages.TryTake(deviceId, options.Value.MaxMessagesPerSecondPerDevice);

    /// <summary>Takes one bulk upload from the device's allowance; false when it is spent.</summary>
    public bool TryTakeUpload(string deviceId) => _uploads.TryTake(deviceId, options.Value.MaxUploadsPerMinutePerDevice / 60.0);

    /// <summary>How many devices' buckets are held (messages and uploads).</summary>
    internal int BucketCount => _messages.Count + _uploads.Count;

    /// <summary>One kind of allowance, a bucket per device holding up to <c>burstSeconds</c> of its rate.</summary>
    private sealed class Buckets(double burstSeconds, TimeProvider timeProvider)
    {
        private readonly ConcurrentDictionary<string, Bucket> _byDevice = new(StringComparer.Ordinal);
        private readonly long _burstTicks = (long)(burstSeconds * timeProvider.TimestampFrequency);
        private long _nextSweep = timeProvider.GetTimestamp() + (long)(burstSeconds * timeProvider.TimestampFrequency);

        public int Count => _byDevice.Count;

        public bool TryTake(string deviceId, double perSecond)
        {
            var now = timeProvider.GetTimestamp();
            var capacity = perSecond * burstSeconds;
            var bucket = _byDevice.GetOrAdd(deviceId, static (_, state) => new Bucket(state.Capacity, state.Now), (Capacity: capacity, Now: now));
            var taken = bucket.TryTake(perSecond, capacity, now, timeProvider.TimestampFrequency);
            var due = Volatile.Read(ref _nextSweep);
            if (now >= due && Interlocked.CompareExchange(ref _nextSweep, now + _burstTicks, due) == due)
            {
                // Off the caller's path: a scan of 100,000 buckets takes 5–12 ms, too long to hold a message's answer.
                ThreadPool.UnsafeQueueUserWorkItem(static state => state.Buckets.Sweep(state.Now), (Buckets: this, Now: now), preferLocal: false);
            }

            return taken;
        }

        // Once a burst period: a bucket untouched for a whole period is full again. One taken from between the check and
        // the removal loses that one take (its device's next message finds a new, full bucket): one message, once.
        private void Sweep(long now)
        {
            foreach (var (deviceId, bucket) in _byDevice)
            {
                if (now - bucket.LastTakenAt >= _burstTicks)
                {
                    _byDevice.TryRemove(new KeyValuePair<string, Bucket>(deviceId, bucket));
                }
            }
        }
    }

    private sealed class Bucket(double tokens, long timestamp)
    {
        private double _tokens = tokens;
        private long _timestamp = timestamp;

        public long LastTakenAt => Volatile.Read(ref _timestamp);

        public bool TryTake(double perSecond, double capacity, long now, long frequency)
        {
            // The bucket is private to the limiter, so its own monitor is the lock: no lock object per device.
            lock (this)
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
