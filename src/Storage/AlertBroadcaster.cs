using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Telemetry.Core.Alerts;
using Telemetry.Core.Storage;

namespace Telemetry.Storage;

/// <summary>
/// Hands alert events to live server-sent event streams in this process, in the order of their positions in the alert
/// log. Each stream has a bounded queue; a stream that falls behind is told so and catches up from the alert store
/// rather than holding memory.
/// </summary>
/// <remarks>
/// Events stored together are handed on by each patient's grain as it resumes, in any order; a stream that took a later
/// position first would take the earlier ones for events it had sent (a burst of forty alerts reached the stream of
/// every patient as one or two). So events wait here for the positions before them (the log numbers them one by one),
/// for <see cref="MaxWait"/>. A position still missing then (its grain slow to resume under load, or failed before
/// handing its events on, which its next activation does late) is read from the store, which holds every event before
/// the latest it has numbered, and goes before the events that waited for it: a client that reconnects with the id of
/// a later event does not step over it (with no stream subscribed nothing is read: what waits goes). Only when the
/// store cannot be read (within <see cref="FillTimeout"/>) does what waits go without it. The order starts after the log's latest position when the server started (read then;
/// until it is known, or if it cannot be, what waits goes after its while in the order it has). An event from before
/// the next awaited position (history handed on again after a crash, or late after such a release) goes at once; one
/// read from the store before its grain handed it on is not sent again (the last 1,024 such are remembered; the
/// streams drop an older one as sent).
/// </remarks>
public sealed partial class AlertBroadcaster(IAlertStore store, TimeProvider timeProvider, ILogger<AlertBroadcaster> logger) : IDisposable
{
    private const int QueueCapacity = 1_024;

    /// <summary>The longest an event waits for the positions before it to be handed on, before they are read from the store.</summary>
    public static readonly TimeSpan MaxWait = TimeSpan.FromMilliseconds(100);

    /// <summary>The longest the missing positions' read from the store may take; the events waiting go without them after it.</summary>
    public static readonly TimeSpan FillTimeout = TimeSpan.FromSeconds(2);

    // The most missing positions read from the store at once (a wider gap is read this many at a time).
    private const int MaxFill = 256;

    // Positions read from the store and delivered, remembered so that their grains' late hand-on is not delivered again
    // (one older than these is, and the streams drop it as sent).
    private const int FilledRemembered = 1_024;

    // The log's latest position when this server started (read at once; -1 if it could not be): events up to it are
    // history handed on again (a grain's outbox after a crash), the order starts after it.
    private readonly Task<long> _started = Task.Run(() => LatestPositionAsync(store, logger));

    private readonly Lock _lock = new();
    private Subscription[] _subscriptions = [];

    // The position awaited next (0: not known yet, the log's latest at the start not read, so the first events wait
    // their while and go in the order they have), and the events after it that came first, each with when it came (a
    // Stopwatch timestamp of the time provider), with the timer that lets them go once the earliest of them has waited
    // long enough; whether the positions missing are being read from the store, and those that were.
    private readonly Lock _order = new();
    private long _next;
    private readonly SortedList<long, (AlertEvent Event, long Since)> _waiting = [];
    private ITimer? _release;
    private bool _filling;
    private bool _disposed;
    private readonly HashSet<long> _filled = [];
    private readonly Queue<long> _filledOrder = new();

    public Subscription Subscribe(string? patientId)
    {
        var subscription = new Subscription(this, patientId);
        lock (_lock)
        {
            _subscriptions = [.. _subscriptions, subscription];
        }

        return subscription;
    }

    /// <summary>The read of where the order starts (for tests).</summary>
    internal Task Started => _started;

    public void Publish(IReadOnlyList<AlertEvent> events)
    {
        lock (_order)
        {
            KnowWhereTheOrderStarts();
            foreach (var item in events)
            {
                if (_next != 0 && item.Position < _next)
                {
                    if (!_filled.Remove(item.Position))
                    {
                        Deliver(item);
                    }
                }
                else
                {
                    _waiting.TryAdd(item.Position, (item, timeProvider.GetTimestamp()));
                }
            }

            DeliverInOrder(releaseAll: false);
        }
    }

    /// <summary>Once the log's latest position at the start is known, the order starts after it (under the order lock).</summary>
    private void KnowWhereTheOrderStarts()
    {
        if (_next == 0 && _started.IsCompletedSuccessfully && _started.Result >= 0)
        {
            _next = _started.Result + 1;
        }
    }

    /// <summary>Delivers the waiting events that are next in order, or all of them; arms the timer for the rest (under the order lock).</summary>
    private void DeliverInOrder(bool releaseAll)
    {
        DeliverNext(through: releaseAll ? long.MaxValue : long.MinValue);
        Arm();
    }

    /// <summary>
    /// Delivers, in order, the waiting events at positions up to <paramref name="through"/> and those next in order after
    /// them (and any from before the next awaited position: history that waited while where the order starts was not
    /// known) (under the order lock).
    /// </summary>
    private void DeliverNext(long through = long.MinValue)
    {
        while (_waiting.Count > 0 && _waiting.Keys[0] <= Math.Max(_next, through))
        {
            var item = _waiting.Values[0].Event;
            _waiting.RemoveAt(0);
            Deliver(item);
            _next = Math.Max(_next, item.Position + 1);
        }
    }

    /// <summary>Arms the timer for the earliest waiting event's while, or disarms it when none waits (under the order lock).</summary>
    private void Arm()
    {
        if (_disposed)
        {
            return;
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
    /// The timer: once the earliest waiting event has waited its while, the positions awaited were not handed on in time.
    /// They are read from the store (see <see cref="FillAsync"/>); while where the order starts is not known, what waits
    /// goes as it is. (A timer fired just as events were delivered finds the rest not yet due, and re-arms.)
    /// </summary>
    private void ReleaseWaiting()
    {
        long from, to;
        lock (_order)
        {
            if (_filling || _disposed)
            {
                // The fill delivers what waits when it ends.
                return;
            }

            KnowWhereTheOrderStarts();
            DeliverNext();
            var due = false;
            foreach (var (_, waiting) in _waiting)
            {
                due |= timeProvider.GetElapsedTime(waiting.Since) >= MaxWait;
            }

            // With no stream to serve, what waits goes as it is: nobody to keep the order for, no read worth making.
            if (!due || _next == 0 || Volatile.Read(ref _subscriptions).Length == 0)
            {
                DeliverInOrder(releaseAll: due);
                return;
            }

            // Up to the latest waiting: every position before a handed-on event is in the log (numbered in order).
            _filling = true;
            (from, to) = (_next, Math.Min(_waiting.Keys[^1], _next + MaxFill));
        }

        // Outside the lock: the store's read may do work before its first wait.
        _ = FillAsync(from, to);
    }

    /// <summary>
    /// Reads the events at positions [<paramref name="from"/>, <paramref name="to"/>) from the store and delivers them
    /// with the waiting events among them, in order (those handed on meanwhile went already); a position the store does
    /// not hold there never comes (retention deleted it). Events after <paramref name="to"/> go on waiting their own while.
    /// When the store cannot be read in time, everything waiting goes, in order.
    /// </summary>
    /// <remarks>
    /// One fill at a time, each after an event has waited <see cref="MaxWait"/>. On DuckDB the read first has the file
    /// take the alert state's journal (a transaction), which is why fills are kept to the positions actually missing.
    /// </remarks>
    private async Task FillAsync(long from, long to)
    {
        IReadOnlyList<AlertEvent>? found = null;

        // Counted from the fill's start, not from when the pool runs it.
        using var timeout = new CancellationTokenSource(FillTimeout, timeProvider);
        try
        {
            // Off the caller's thread, which may hold the order lock (a timer that fires inside the call that arms it).
            await Task.Yield();

            // The stores honour the token only in part (a Redis command runs to its own timeout): the wait ends with it here.
            found = await store.ReadEventsAsync(from - 1, null, (int)(to - from), timeout.Token)
                .WaitAsync(timeout.Token)
                .ConfigureAwait(false);
        }
        catch (Exception exception)
        {
            LogFillFailed(logger, exception, from, to - 1);
        }
        finally
        {
            lock (_order)
            {
                _filling = false;
                if (found is null)
                {
                    DeliverInOrder(releaseAll: true);
                }
                else
                {
                    DeliverFilled(found, to);
                }
            }
        }
    }

    /// <summary>Delivers what was read and what waits before <paramref name="to"/>, in order; then the rest as ever (under the order lock).</summary>
    private void DeliverFilled(IReadOnlyList<AlertEvent> found, long to)
    {
        foreach (var item in found)
        {
            if (item.Position >= _next && item.Position < to && _waiting.TryAdd(item.Position, (item, timeProvider.GetTimestamp())))
            {
                Remember(item.Position);
            }
        }

        DeliverNext(through: to - 1);
        _next = Math.Max(_next, to);
        DeliverInOrder(releaseAll: false);
    }

    private static async Task<long> LatestPositionAsync(IAlertStore store, ILogger logger)
    {
        try
        {
            return await store.LastPositionAsync().ConfigureAwait(false);
        }
        catch (Exception exception)
        {
            LogStartUnknown(logger, exception);
            return -1;
        }
    }

    private void Remember(long position)
    {
        if (_filled.Add(position))
        {
            _filledOrder.Enqueue(position);
        }

        while (_filledOrder.Count > FilledRemembered)
        {
            _filled.Remove(_filledOrder.Dequeue());
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

    /// <summary>Stops the timer: events still waiting are not delivered (the server is stopping, and its streams with it).</summary>
    public void Dispose()
    {
        lock (_order)
        {
            _disposed = true;
            _release?.Dispose();
        }
    }

    private void Remove(Subscription subscription)
    {
        lock (_lock)
        {
            _subscriptions = [.. _subscriptions.Where(s => s != subscription)];
        }
    }

    [LoggerMessage(EventId = 3701, Level = LogLevel.Warning, Message = "Alert positions {From} to {To} were not handed on in time and could not be read from the alert store; the events waiting go to live streams without them")]
    private static partial void LogFillFailed(ILogger logger, Exception exception, long from, long to);

    [LoggerMessage(EventId = 3702, Level = LogLevel.Warning, Message = "The alert store's latest position could not be read at the start; live streams take the first events in the order they come")]
    private static partial void LogStartUnknown(ILogger logger, Exception exception);

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
