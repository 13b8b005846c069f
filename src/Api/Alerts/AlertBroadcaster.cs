using System.Threading.Channels;
using Telemetry.Core.Alerts;

namespace Telemetry.Api.Alerts;

/// <summary>
/// Hands alert events to live server-sent event streams in this process. Each stream has a bounded queue; a stream that
/// falls behind is told so and catches up from the alert store rather than holding memory.
/// </summary>
public sealed class AlertBroadcaster
{
    private const int QueueCapacity = 1_024;

    private readonly Lock _lock = new();
    private Subscription[] _subscriptions = [];

    public Subscription Subscribe(string? patientId)
    {
        var subscription = new Subscription(this, patientId);
        lock (_lock)
        {
            _subscriptions = [.. _subscriptions, subscription];
        }

        return subscription;
    }

    public void Publish(IReadOnlyList<AlertEvent> events)
    {
        foreach (var subscription in Volatile.Read(ref _subscriptions))
        {
            foreach (var item in events)
            {
                if (subscription.PatientId is null || subscription.PatientId == item.PatientId)
                {
                    subscription.Offer(item);
                }
            }
        }
    }

    private void Remove(Subscription subscription)
    {
        lock (_lock)
        {
            _subscriptions = [.. _subscriptions.Where(s => s != subscription)];
        }
    }

    /// <summary>One live stream's queue: of one patient, or (null) of all.</summary>
    public sealed class Subscription(AlertBroadcaster owner, string? patientId) : IDisposable
    {
        private readonly Channel<AlertEvent> _queue = Channel.CreateBounded<AlertEvent>(new BoundedChannelOptions(QueueCapacity)
        {
            SingleReader = true,
            FullMode = BoundedChannelFullMode.Wait,
        });

        private volatile bool _overflowed;

        public string? PatientId { get; } = patientId;

        public ChannelReader<AlertEvent> Events => _queue.Reader;

        /// <summary>True once an event could not be queued: the reader must catch up from the store. Reading it resets it.</summary>
        public bool TakeOverflow()
        {
            var overflowed = _overflowed;
            _overflowed = false;
            return overflowed;
        }

        public void Dispose() => owner.Remove(this);

        internal void Offer(AlertEvent item)
        {
            if (!_queue.Writer.TryWrite(item))
            {
                _overflowed = true;
            }
        }
    }
}
