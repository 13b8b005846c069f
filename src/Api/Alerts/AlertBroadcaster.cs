using System.Threading.Channels;
using Telemetry.Core.Alerts;

namespace Telemetry.Api.Alerts;

/// <summary>
/// Hands alert events to live server-sent event streams in this process, in the order of their positions in the alert
/// log. Each stream has a bounded queue; a stream that falls behind is told so and catches up from the alert store
/// rather than holding memory.
/// </summary>
/// <remarks>
/// Events stored together are handed on by each patient's grain as it resumes, in any order; a stream that took a later
/// position first would take the earlier ones for events it had sent (a burst of forty alerts reached the stream of
/// every patient as one or two). So events wait here for the positions before them (the log numbers them one by one),
/// for <see cref="MaxWait"/> at most: a position never handed on (an event stored by a grain that failed before
/// handing it on, which its next activation hands on late) holds back the ones after it no longer than that. An event
/// from before the next awaited position (handed on again after a crash, or late) goes at once.
/// </remarks>
public sealed class AlertBroadcaster(TimeProvider timeProvider)
{
    private const int QueueCapacity = 1_024;

    /// <summary>The longest an event waits for the positions before it.</summary>
    public static readonly TimeSpan MaxWait = TimeSpan.FromMilliseconds(100);

    private readonly Lock _lock = new();
    private Subscription[] _subscriptions = [];

    // The position awaited next (0: none yet, so the first events wait their while, as their order is not known), and
    // the events after it that came first, each with when it came (a Stopwatch timestamp of the time provider), with the
    // timer that lets them go once the earliest of them has waited long enough.
    private readonly Lock _order = new();
    private long _next;
    private readonly SortedList<long, (AlertEvent Event, long Since)> _waiting = [];
    private ITimer? _release;

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
        lock (_order)
        {
            foreach (var item in events)
            {
                if (_next != 0 && item.Position < _next)
                {
                    Deliver(item);
                }
                else
                {
                    _waiting.TryAdd(item.Position, (item, timeProvider.GetTimestamp()));
                }
            }

            DeliverInOrder(releaseAll: false);
        }
    }

    /// <summary>Delivers the waiting events that are next in order, or all of them; arms the timer for the rest (under the order lock).</summary>
    private void DeliverInOrder(bool releaseAll)
    {
        while (_waiting.Count > 0 && (releaseAll || _waiting.Keys[0] == _next))
        {
            var item = _waiting.Values[0].Event;
            _waiting.RemoveAt(0);
            Deliver(item);
            _next = item.Position + 1;
        }

        if (_waiting.Count == 0)
        {
            _release?.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
            return;
        }

        // Due once the earliest of them has waited MaxWait: no later event puts that off.
        var since = long.MaxValue;
        foreach (var (_, waiting) in _waiting)
        {
            since = Math.Min(since, waiting.Since);
        }

        var left = MaxWait - timeProvider.GetElapsedTime(since);
        _release ??= timeProvider.CreateTimer(_ => ReleaseWaiting(), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        _release.Change(left > TimeSpan.Zero ? left : TimeSpan.Zero, Timeout.InfiniteTimeSpan);
    }

    /// <summary>
    /// The timer: once the earliest waiting event has waited its while, the positions awaited did not come in time, and
    /// what waits goes, in order. (A timer fired just as events were delivered finds the rest not yet due, and re-arms.)
    /// </summary>
    private void ReleaseWaiting()
    {
        lock (_order)
        {
            var due = false;
            foreach (var (_, waiting) in _waiting)
            {
                due |= timeProvider.GetElapsedTime(waiting.Since) >= MaxWait;
            }

            DeliverInOrder(releaseAll: due);
        }
    }

    private void Deliver(AlertEvent item)
    {
        foreach (var subscription in Volatile.Read(ref _subscriptions))
        {
            if (subscription.PatientId is null || subscription.PatientId == item.PatientId)
            {
                subscription.Offer(item);
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

        /// <remarks>
        /// Once an event could not be queued, none after it is either, until the reader takes the overflow: what the
        /// queue holds then all comes before the first event dropped, so the reader's catch-up from the last it sent
        /// reads every dropped one. (Queuing later ones meanwhile would move the reader past the dropped ones.)
        /// </remarks>
        internal void Offer(AlertEvent item)
        {
            if (_overflowed || !_queue.Writer.TryWrite(item))
            {
                _overflowed = true;
            }
        }
    }
}
