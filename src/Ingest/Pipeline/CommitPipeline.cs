using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Threading.Channels;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Concurrency;
using Telemetry.Core.Grains;
using Telemetry.Core.Readings;
using Telemetry.Core.Storage;

namespace Telemetry.Ingest.Pipeline;

/// <summary>
/// The one way readings enter Telemetry. Every front door hands its device batches here and waits: batches queue in
/// a bounded channel, one loop commits whatever has gathered in one transaction (group commit), answers each waiter
/// only then, and hands the flush to a second loop, which calls each patient's grain once with all of that patient's
/// readings from the flush (one flush after another, so a patient's calls are issued in commit order); while that loop
/// has no flush waiting and the commit left time before the next is due, the commit loop makes the calls itself. A
/// flush's grain calls run while the next flushes commit, up to <see cref="IngestOptions.MaxReadingsInGrainCalls"/>
/// readings handed over and not yet answered for. When the store (or the grains) are slow the queue fills and the
/// front doors stop acking: backpressure, not growth. Grain calls lost to a crash or failed are made good from the raw store by
/// <see cref="GrainRepair"/>, when the store keeps a commit log.
/// </summary>
public sealed partial class CommitPipeline : BackgroundService
{
    private static readonly TimeSpan RetryDelay = TimeSpan.FromMilliseconds(200);

    private readonly Channel<PendingBatch> _queue;

    // Batches a sender has handed over while the queue was full, waiting for room in it.
    private int _waitingForRoom;

    // Committed flushes for the dispatching loop, in commit order; bounded by the readings they hold (see
    // MaxReadingsInGrainCalls), which the commit loop counts before it hands a flush over. And how many flushes were
    // handed over whose calls the loop has not yet made: while none, the commit loop may make a flush's calls itself.
    private int _flushesHandedOver;
    private readonly Channel<CommittedFlush> _toGrains = Channel.CreateUnbounded<CommittedFlush>(new UnboundedChannelOptions
    {
        SingleReader = true,
        SingleWriter = true,
    });
    private readonly IRawSeriesStore _store;
    private readonly IGrainFactory _grains;
    private readonly IngestInstruments _instruments;
    private readonly ILogger<CommitPipeline> _logger;
    private readonly int _maxReadingsPerCommit;

    // The shortest time (to the millisecond) from one commit's start to the next's (see Gather), unless this many batches wait.
    private readonly TimeSpan _commitInterval;
    private const int EnoughToCommitAtOnce = 256;
    private readonly int _capacity;

    // Committed readings whose grain calls may be outstanding while the next flushes commit: a patient whose call is
    // slow (its alert state being written, its silo just lost) holds back neither the commits nor the other patients,
    // and memory stays bounded.
    private readonly long _maxReadingsInGrainCalls;
    private long _readingsInGrainCalls;

    // The patient grains' references, by patient (used by one maker of grain calls at a time, see MakeGrainCalls):
    // making one resolves the grain interface by reflection and runs Orleans' reference activator, a few percent of the
    // server's CPU at one reading per MQTT message if done per call. Bounded: forgotten all at once when it holds too many.
    private readonly Dictionary<string, IPatientGrain> _patientGrains = new(StringComparer.Ordinal);
    private const int MaxPatientGrainReferences = 200_000;

    // A flush's readings by patient, and the lists that held them, kept for the next flush (used by one maker of grain
    // calls at a time, see MakeGrainCalls).
    private readonly Dictionary<string, PatientParts> _byPatient = new(StringComparer.Ordinal);
    private readonly Stack<PatientParts> _spareParts = new();

    // Stopwatch timestamp since which the loop has waited for grain calls to make room; 0 when it does not wait.
    private long _waitingForGrainsSince;

    // Stopwatch timestamp at which the oldest batch of the flush being committed was queued; 0 between commits.
    private long _committingSince;

    // Repairs grains that may lack committed readings (a crash, a failed call); null when the store keeps no commit log
    // (or it could not be read at start).
    private GrainRepair? _repair;
    private readonly CancellationToken _hostStarted;
    private readonly TimeSpan _shutdownTimeout;

    // The commit through which every grain call has answered, as the commit loop last worked it out (for the repair's
    // saves).
    private long _appliedThrough;

    // The last commit made, as the commit loop last wrote it (for the repair's settling after a grain rebuilt).
    private long _lastCommitId;

    public CommitPipeline(
        IRawSeriesStore store,
        IGrainFactory grains,
        IngestInstruments instruments,
        IOptions<IngestOptions> options,
        ILogger<CommitPipeline> logger,
        IHostApplicationLifetime lifetime,
        IOptions<HostOptions> host,
        ICommitLog? commitLog = null)
    {
        _shutdownTimeout = host.Value.ShutdownTimeout;
        _store = store;
        _grains = grains;
        _instruments = instruments;
        _logger = logger;
        _maxReadingsPerCommit = options.Value.MaxReadingsPerCommit;
        _commitInterval = options.Value.CommitInterval;
        _capacity = options.Value.CommitQueueCapacity;
        _maxReadingsInGrainCalls = options.Value.MaxReadingsInGrainCalls;
        _repair = commitLog is null ? null : new GrainRepair(
            commitLog,
            grains,
            instruments,
            logger,
            () => Volatile.Read(ref _appliedThrough),
            () => Volatile.Read(ref _lastCommitId),
            settleDelay: store.ReadableAfter);
        _hostStarted = lifetime.ApplicationStarted;
        // Not SingleReader: health peeks at the oldest waiting batch while the loop reads.
        _queue = Channel.CreateBounded<PendingBatch>(new BoundedChannelOptions(options.Value.CommitQueueCapacity)
        {
            FullMode = BoundedChannelFullMode.Wait,
        });
        instruments.ObserveCommitQueue(() => _queue.Reader.Count, () => Volatile.Read(ref _waitingForRoom), () => OldestWait.TotalSeconds);
        instruments.ObserveGrainCalls(() => ReadingsInGrainCalls);
    }

    private volatile bool _storeFailing;

    // When the last commit ended (Stopwatch timestamp; zero before the first).
    private long _lastCommitTimestamp;

    /// <summary>True once the last commit attempt failed and until one succeeds.</summary>
    public bool StoreFailing => _storeFailing;

    /// <summary>
    /// How long the oldest batch not yet answered has waited: in the commit under way, or at the head of the queue.
    /// Zero when nothing waits. It grows when the store is slower than the load.
    /// </summary>
    public TimeSpan OldestWait
    {
        get
        {
            var since = Volatile.Read(ref _committingSince);
            if (since == 0 && _queue.Reader.TryPeek(out var head))
            {
                since = head.Queued;
            }

            return since == 0 ? TimeSpan.Zero : Stopwatch.GetElapsedTime(since);
        }
    }

    /// <summary>Batches waiting in the queue for a commit.</summary>
    public int Queued => _queue.Reader.Count;

    /// <summary>True when the queue is full: a batch handed over now waits for room before it is queued.</summary>
    public bool IsFull => _queue.Reader.Count >= _capacity;

    /// <summary>Committed readings handed to patient grains and not yet answered for.</summary>
    public long ReadingsInGrainCalls => Volatile.Read(ref _readingsInGrainCalls);

    /// <summary>
    /// How long the commit loop has waited for patient grains to answer for enough readings to go on; zero when it
    /// does not wait. It grows when live state (a patient's alerts, a lost silo) is slower than the load.
    /// </summary>
    public TimeSpan GrainWait
    {
        get
        {
            var since = Volatile.Read(ref _waitingForGrainsSince);
            return since == 0 ? TimeSpan.Zero : Stopwatch.GetElapsedTime(since);
        }
    }

    /// <summary>
    /// A server left the cluster, and the patient grains it held come back elsewhere: with a raw store that shows a
    /// commit a while after answering it, the commits they had applied lately are settled from it once it shows them
    /// (a grain coming back may rebuild before then). Nothing otherwise.
    /// </summary>
    public void ServerLeftCluster() => _repair?.SettleRecentlyApplied();

    /// <summary>
    /// Commits <paramref name="batch"/> and completes once it is durable (or was already committed earlier). Throws
    /// <see cref="StoreUnavailableException"/> when the store refused it (through the returned task, never at once);
    /// nothing was acknowledged then. Cancelling
    /// <paramref name="cancellationToken"/> ends the wait with <see cref="OperationCanceledException"/>: a batch already
    /// queued still commits; one cancelled before it is queued (or while it waits for room) is not.
    /// </summary>
    public ValueTask<CommitResult> CommitAsync(DeviceBatch batch, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var pending = new PendingBatch(batch);

        // A caller that gives up stops waiting; the batch still commits. Registered before the batch is queued, so the
        // loop, which lets the registration go once it answers, always finds it. (A registration on the token rather
        // than Task.WaitAsync, which allocates a task of its own for every batch; and no async method here, whose
        // state machine would be another allocation per batch, unless the queue is full or closed.)
        pending.StopWaitingOn(cancellationToken);
        return _queue.Writer.TryWrite(pending) ? new ValueTask<CommitResult>(pending.Completion.Task) : QueueAsync(pending, cancellationToken);
    }

    /// <summary>Waits for room in the queue (backpressure), then for the commit.</summary>
    private async ValueTask<CommitResult> QueueAsync(PendingBatch pending, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _waitingForRoom);
        try
        {
            await _queue.Writer.WriteAsync(pending, cancellationToken);
        }
        catch (ChannelClosedException exception)
        {
            pending.Answered();
            throw new StoreUnavailableException("the server is shutting down", exception);
        }
        catch (OperationCanceledException)
        {
            pending.Answered();
            throw;
        }
        finally
        {
            Interlocked.Decrement(ref _waitingForRoom);
        }

        return await pending.Completion.Task;
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        // Stop taking batches, then let the loop commit and answer what is already queued.
        _queue.Writer.TryComplete();
        await base.StopAsync(cancellationToken);

        // A store that shows a commit a while after answering it: the grains stay active (the silo stops after ingest)
        // until it shows the last commits, so that none of them comes back, here or on another server, to a rebuild
        // that lacks what it had applied. (A shutdown cut short leaves those commits to be settled by the next start.)
        var last = Volatile.Read(ref _lastCommitTimestamp);
        var wait = _store.ReadableAfter - Stopwatch.GetElapsedTime(last);
        if (_store.ReadableAfter > TimeSpan.Zero && last != 0 && wait > TimeSpan.Zero)
        {
            LogWaitingForStoreToShow(_logger, wait.TotalSeconds, _shutdownTimeout.TotalSeconds);
            await Task.Delay(wait, cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            if (cancellationToken.IsCancellationRequested)
            {
                LogStoreWaitCutShort(_logger);
            }
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // The embedded store commits synchronously: the loop runs on a thread of its own, every await of it coming back
        // there, so that a commit never holds one of the thread pool's.
        using var thread = new CommitThread("telemetry-commit");
        await Task.Factory.StartNew(() => RunAsync(stoppingToken), stoppingToken, TaskCreationOptions.DenyChildAttach, thread).Unwrap();
    }

    private async Task RunAsync(CancellationToken stoppingToken)
    {
        var flush = new List<PendingBatch>();
        var batches = new List<DeviceBatch>();
        var outcomes = new BatchOutcome[64];
        var reader = _queue.Reader;
        var dispatches = new Queue<Dispatch>();

        // The last commit known to the loop (from the store at start, then each that succeeded), and whether one has
        // failed since (its readings may be stored all the same).
        var lastCommitId = await StartRepairAsync(stoppingToken);
        Volatile.Write(ref _appliedThrough, lastCommitId);
        Volatile.Write(ref _lastCommitId, lastCommitId);
        // The grain calls are made on the thread pool, unless the commit loop has time to spare (see HasTimeToSpare).
        var dispatching = Task.Run(DispatchLoopAsync, CancellationToken.None);
        var failedSince = false;
        try
        {
            var lastStarted = 0L;
            while (await reader.WaitToReadAsync(CancellationToken.None))
            {
                Gather(reader, lastStarted);
                lastStarted = Stopwatch.GetTimestamp();
                flush.Clear();
                batches.Clear();
                var readings = 0;
                while (readings < _maxReadingsPerCommit && reader.TryRead(out var pending))
                {
                    flush.Add(pending);
                    batches.Add(pending.Batch);
                    readings += pending.Batch.Readings.Length;
                }

                if (outcomes.Length < flush.Count)
                {
                    outcomes = new BatchOutcome[Math.Max(flush.Count, outcomes.Length * 2)];
                }

                var started = Stopwatch.GetTimestamp();
                Volatile.Write(ref _committingSince, flush[0].Queued);
                long commitId;
                try
                {
                    // Not cancelled by shutdown: what is queued is committed and answered before the server stops.
                    commitId = await _store.CommitAsync(batches, outcomes.AsMemory(0, flush.Count), CancellationToken.None);
                    Volatile.Write(ref _lastCommitTimestamp, Stopwatch.GetTimestamp());
                    _storeFailing = false;
                }
                catch (Exception exception)
                {
                    Volatile.Write(ref _lastCommitTimestamp, Stopwatch.GetTimestamp());
                    _storeFailing = true;
                    failedSince = true;
                    Volatile.Write(ref _committingSince, 0);
                    var failure = new StoreUnavailableException("the raw store could not commit the batch; retry", exception);
                    var failedAt = Stopwatch.GetTimestamp();
                    foreach (var pending in flush)
                    {
                        pending.Completion.TrySetException(failure);
                        pending.Answered();
                    }

                    // Answered first: nothing after may leave a caller waiting.
                    _instruments.CommitFailed();
                    foreach (var pending in flush)
                    {
                        _instruments.BatchAnswered(Stopwatch.GetElapsedTime(pending.Queued, failedAt), committed: false);
                    }

                    LogCommitFailed(_logger, exception, flush.Count, readings);

                    // Give a failing store a moment rather than spinning on it.
                    await Task.Delay(RetryDelay, stoppingToken.IsCancellationRequested ? CancellationToken.None : stoppingToken)
                        .ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing | ConfigureAwaitOptions.ContinueOnCapturedContext);
                    continue;
                }

                var answeredAt = Stopwatch.GetTimestamp();
                for (var i = 0; i < flush.Count; i++)
                {
                    flush[i].Completion.TrySetResult(new CommitResult(outcomes[i].Outcome, outcomes[i].Stored.Length, outcomes[i].Duplicates, outcomes[i].Quarantined.Length, outcomes[i].Conflicts));
                    flush[i].Answered();
                }

                _instruments.Committed(flush.Count, Stopwatch.GetElapsedTime(started, answeredAt));
                foreach (var pending in flush)
                {
                    _instruments.BatchAnswered(Stopwatch.GetElapsedTime(pending.Queued, answeredAt), committed: true);
                }

                Volatile.Write(ref _committingSince, 0);

                if (failedSince)
                {
                    // The commits that failed since the last one that succeeded may have stored readings that no grain saw;
                    // and the store is back, so repairs waiting on it go now.
                    _repair?.Add(lastCommitId, commitId - 1, patients: null);
                    _repair?.RetryNow();
                    failedSince = false;
                }

                // The grain calls are made by the dispatching loop, so the next commit need not wait for them to be issued,
                // unless the commit loop has time to spare before the next commit (below).
                var committed = CommittedFlush.Of(lastCommitId, commitId, flush, outcomes);
                Volatile.Write(ref _lastCommitId, commitId);
                if (committed is null)
                {
                    dispatches.Enqueue(new Dispatch(commitId, Task.CompletedTask));
                }
                else
                {
                    Interlocked.Add(ref _readingsInGrainCalls, committed.Readings);
                    if (Volatile.Read(ref _flushesHandedOver) == 0 && HasTimeToSpare(reader, lastStarted, committed))
                    {
                        // The loop would sleep out the rest of its interval next: the calls are made here in that time,
                        // without a hand-over to a pool thread that, on a loaded machine, may wait milliseconds to run
                        // (and every alert with it). The dispatching loop has made the calls of every flush before.
                        // Made as a task of the default scheduler's, run here: a continuation inside Orleans' call
                        // (a grain's address looked up) then goes to the pool, not to this loop's own thread.
                        new Task(() => MakeGrainCalls(committed)).RunSynchronously(TaskScheduler.Default);
                    }
                    else
                    {
                        Interlocked.Increment(ref _flushesHandedOver);
                        if (!_toGrains.Writer.TryWrite(committed))
                        {
                            throw new UnreachableException("the dispatching loop's channel is completed only after the commit loop ends");
                        }
                    }

                    dispatches.Enqueue(new Dispatch(commitId, committed.Done.Task));
                }

                lastCommitId = commitId;
                await MakeRoomForGrainCallsAsync(dispatches);
                var appliedThrough = AppliedThrough(dispatches, lastCommitId);
                Volatile.Write(ref _appliedThrough, appliedThrough);
                _repair?.SaveSoon(appliedThrough);
            }
        }
        finally
        {
            // The dispatching loop ends once it has made the calls of every flush handed over.
            _toGrains.Writer.TryComplete();
        }

        await dispatching;
        await Task.WhenAll(dispatches.Select(dispatch => dispatch.Done));
        if (_repair is not null)
        {
            await _repair.SaveLastAsync(lastCommitId);
        }
    }

    /// <summary>
    /// Whether the commit loop may make a flush's grain calls itself: the next commit is not due yet (it would sleep out
    /// the rest of the interval in <see cref="Gather"/>: no backlog waits) and the flush is small enough to call in that time.
    /// </summary>
    private bool HasTimeToSpare(ChannelReader<PendingBatch> reader, long lastStarted, CommittedFlush committed) =>
        _commitInterval > TimeSpan.Zero
        && reader.Count < EnoughToCommitAtOnce
        && committed.Batches.Length <= EnoughToCommitAtOnce
        && Stopwatch.GetElapsedTime(lastStarted) < _commitInterval;

    /// <summary>
    /// Before a commit: when the one before started less than <see cref="IngestOptions.CommitInterval"/> ago, waits the
    /// rest of it, so that batches arriving meanwhile share this commit (and its WAL fsync) instead of each few starting
    /// one of their own. A commit that took the interval or longer, a first one after a quiet spell and a flush already
    /// large enough go at once: only a steady stream of small commits is spaced out.
    /// </summary>
    private void Gather(ChannelReader<PendingBatch> reader, long lastStarted)
    {
        if (_commitInterval <= TimeSpan.Zero || reader.Count >= EnoughToCommitAtOnce)
        {
            return;
        }

        // Slept on the commit's own thread: a timer's callback would wait for a thread-pool thread, behind the very
        // work of the load, and hold the commit (and every ack) for as long.
        var rest = _commitInterval - Stopwatch.GetElapsedTime(lastStarted);
        if (rest > TimeSpan.Zero)
        {
            Thread.Sleep(rest);
        }
    }

    /// <summary>Starts repairing what grains may lack from before this start; returns the last commit.</summary>
    private async Task<long> StartRepairAsync(CancellationToken stoppingToken)
    {
        if (_repair is null)
        {
            return 0;
        }

        try
        {
            return await _repair.StartAsync(_hostStarted, stoppingToken);
        }
        catch (Exception exception)
        {
            // Ingest goes on; grains are not repaired this time, and the mark stays where it was for the next start.
            LogRepairUnavailable(_logger, exception);
            _repair = null;
            return 0;
        }
    }

    /// <summary>The commit through which every grain call has answered: before the oldest call still outstanding.</summary>
    private static long AppliedThrough(Queue<Dispatch> dispatches, long lastCommitId)
    {
        foreach (var dispatch in dispatches)
        {
            if (!dispatch.Done.IsCompleted)
            {
                return dispatch.CommitId - 1;
            }
        }

        return lastCommitId;
    }

    /// <summary>
    /// Forgets the flushes whose grain calls have all answered, and waits for the oldest outstanding ones while more
    /// than the bound of readings are still with the grains.
    /// </summary>
    private async Task MakeRoomForGrainCallsAsync(Queue<Dispatch> dispatches)
    {
        while (dispatches.TryPeek(out var oldest) && oldest.Done.IsCompleted)
        {
            _ = dispatches.Dequeue();
        }

        while (Volatile.Read(ref _readingsInGrainCalls) > _maxReadingsInGrainCalls && dispatches.TryDequeue(out var oldest))
        {
            Volatile.Write(ref _waitingForGrainsSince, Stopwatch.GetTimestamp());
            await oldest.Done;
            Volatile.Write(ref _waitingForGrainsSince, 0);
        }
    }

    /// <summary>
    /// The dispatching loop: for each committed flush handed over, in commit order, makes its grain calls; they run on
    /// while the next flushes' calls are made. Ends once the commit loop has handed over its last flush.
    /// </summary>
    private async Task DispatchLoopAsync()
    {
        var reader = _toGrains.Reader;
        while (await reader.WaitToReadAsync())
        {
            while (reader.TryRead(out var committed))
            {
                MakeGrainCalls(committed);
                Interlocked.Decrement(ref _flushesHandedOver);
            }
        }
    }

    /// <summary>
    /// Makes a committed flush's grain calls, then leaves them to answer; never throws. Made by one thread at a time, in
    /// commit order: the dispatching loop, or the commit loop while no flush handed over waits for its calls.
    /// </summary>
    private void MakeGrainCalls(CommittedFlush committed)
    {
        List<(string PatientId, ValueTask<Immutable<CommittedMinute[]>> Call)> calls = [];
        try
        {
            // A call that could not be made comes back as a failed one, repaired with the others.
            calls = CallGrains(committed);
        }
        catch (Exception exception)
        {
            // Not even the flush's patients could be told apart: all of them are repaired.
            _instruments.GrainCallFailed();
            LogGrainCallFailed(_logger, exception);
            _repair?.Add(committed.PreviousCommitId, committed.CommitId, patients: null);
        }
        finally
        {
            // Never faults; releases the flush's readings and completes its Done once its calls have answered, whatever
            // happened above (the commit loop may wait on Done).
            _ = AwaitGrainCallsAsync(committed, calls);
        }
    }

    /// <summary>
    /// Calls each patient's grain once with all of that patient's newly stored and implausible readings from the flush,
    /// and returns the calls; a call that could not be made is a faulted one. The lists here are reused for the next
    /// flush.
    /// </summary>
    private List<(string PatientId, ValueTask<Immutable<CommittedMinute[]>> Call)> CallGrains(CommittedFlush committed)
    {
        var byPatient = _byPatient;
        var calls = new List<(string PatientId, ValueTask<Immutable<CommittedMinute[]>> Call)>();
        try
        {
            foreach (var (batch, outcome, queued) in committed.Batches)
            {
                if (!byPatient.TryGetValue(batch.PatientId, out var parts))
                {
                    parts = _spareParts.TryPop(out var spare) ? spare : new PatientParts();
                    parts.FirstQueued = queued;
                    byPatient[batch.PatientId] = parts;
                }

                parts.FirstQueued = Math.Min(parts.FirstQueued, queued);

                if (!outcome.Stored.IsEmpty)
                {
                    parts.Stored.Add(outcome.Stored);
                }

                var implausible = outcome.Quarantined;
                if (!implausible.IsEmpty)
                {
                    parts.Implausible.Add(implausible);
                }
            }

            calls.Capacity = byPatient.Count;
            var now = DateTimeOffset.UtcNow;
            var nowTimestamp = Stopwatch.GetTimestamp();
            foreach (var (patientId, parts) in byPatient)
            {
                ValueTask<Immutable<CommittedMinute[]>> call;
                try
                {
                    var readings = new PatientReadings(committed.CommitId, parts.Stored.Count == 0 ? [] : Whole(parts.Stored[0]), parts.Implausible.Count == 0 ? null : Concat(parts.Implausible))
                    {
                        HandedOverAt = now - Stopwatch.GetElapsedTime(parts.FirstQueued, nowTimestamp),
                        MoreReadings = parts.Stored.Count <= 1 ? null : AfterFirst(parts.Stored),
                    };
                    call = PatientGrain(patientId).ApplyAsync(readings);
                }
                catch (Exception exception)
                {
                    call = ValueTask.FromException<Immutable<CommittedMinute[]>>(exception);
                }

                calls.Add((patientId, call));
            }
        }
        finally
        {
            foreach (var parts in byPatient.Values)
            {
                parts.Stored.Clear();
                parts.Implausible.Clear();
                _spareParts.Push(parts);
            }

            byPatient.Clear();
        }

        return calls;
    }

    private IPatientGrain PatientGrain(string patientId)
    {
        if (_patientGrains.TryGetValue(patientId, out var grain))
        {
            return grain;
        }

        grain = _grains.GetGrain<IPatientGrain>(patientId);
        if (_patientGrains.Count >= MaxPatientGrainReferences)
        {
            _patientGrains.Clear();
        }

        _patientGrains[patientId] = grain;
        return grain;
    }

    /// <summary>
    /// Awaits a flush's grain calls, queues the repair of what failed, and completes <see cref="CommittedFlush.Done"/>;
    /// never faults.
    /// </summary>
    private async Task AwaitGrainCallsAsync(CommittedFlush committed, List<(string PatientId, ValueTask<Immutable<CommittedMinute[]>> Call)> calls)
    {
        try
        {
            List<string>? failed = null;
            foreach (var (patientId, call) in calls)
            {
                CommittedMinute[] unsettled;
                try
                {
                    // Resumed wherever the call answers: not on the commit loop's thread, which may have made it.
                    unsettled = (await call.ConfigureAwait(false)).Value;
                }
                catch (Exception exception)
                {
                    // Faulted, or cancelled (a timeout can end a call that way).
                    _instruments.GrainCallFailed();
                    LogGrainCallFailed(_logger, exception.GetBaseException());
                    (failed ??= []).Add(patientId);
                    continue;
                }

                if (unsettled is { Length: > 0 })
                {
                    // Late windows recomputed before the store showed the commit: again, once it does.
                    _repair?.AddUnsettled(patientId, committed.CommitId, unsettled);
                }
            }

            // The readings are committed, but the grain may lack them (a call that timed out may never have arrived),
            // and windows older than the days a grain rebuilds would lack them for good: they are recomputed. A failed
            // call also starts its grain over, whose next activation may rebuild before the store shows the commits it
            // had applied: those are settled.
            if (failed is not null)
            {
                // From the commit before (ids need not be consecutive): failed calls of neighbouring commits make one range.
                _repair?.CallsFailed(committed.PreviousCommitId, committed.CommitId, failed);
            }
        }
        finally
        {
            Interlocked.Add(ref _readingsInGrainCalls, -committed.Readings);
            committed.Done.TrySetResult();
        }
    }

    /// <summary>A batch's readings as an array of their own: the batch's own array when they are all of it (it is immutable).</summary>
    private static VitalReading[] Whole(ReadOnlyMemory<VitalReading> part) =>
        MemoryMarshal.TryGetArray(part, out var whole) && whole.Offset == 0 && whole.Count == whole.Array!.Length ? whole.Array : part.ToArray();

    /// <summary>The readings of every batch but the first, each batch's as an array of its own.</summary>
    private static VitalReading[][] AfterFirst(List<ReadOnlyMemory<VitalReading>> parts)
    {
        var rest = new VitalReading[parts.Count - 1][];
        for (var i = 1; i < parts.Count; i++)
        {
            rest[i - 1] = Whole(parts[i]);
        }

        return rest;
    }

    private static VitalReading[] Concat(List<ReadOnlyMemory<VitalReading>> parts)
    {
        if (parts.Count == 0)
        {
            return [];
        }

        // The common case, one batch from one device: its array goes to the grain as it is.
        if (parts.Count == 1)
        {
            return Whole(parts[0]);
        }

        var total = parts.Sum(part => part.Length);
        var all = new VitalReading[total];
        var offset = 0;
        foreach (var part in parts)
        {
            part.Span.CopyTo(all.AsSpan(offset));
            offset += part.Length;
        }

        return all;
    }

    [LoggerMessage(EventId = 1001, Level = LogLevel.Error, Message = "Committing {Batches} batches ({Readings} readings) failed; none was acknowledged")]
    private static partial void LogCommitFailed(ILogger logger, Exception exception, int batches, int readings);

    [LoggerMessage(EventId = 1002, Level = LogLevel.Warning, Message = "A patient grain call failed after commit")]
    private static partial void LogGrainCallFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 1012, Level = LogLevel.Information, Message = "Waiting {Seconds:0.0} s for the raw store to show the last commits before the patient grains deactivate (the shutdown may take {ShutdownTimeoutSeconds:0} s in all)")]
    private static partial void LogWaitingForStoreToShow(ILogger logger, double seconds, double shutdownTimeoutSeconds);

    [LoggerMessage(EventId = 1013, Level = LogLevel.Warning, Message = "The host's shutdown timeout ended the wait for the raw store to show the last commits: the next start settles the windows they touched")]
    private static partial void LogStoreWaitCutShort(ILogger logger);

    [LoggerMessage(EventId = 1007, Level = LogLevel.Error, Message = "The commit log could not be read: patient grains are not repaired until the next start")]
    private static partial void LogRepairUnavailable(ILogger logger, Exception exception);

    /// <summary>
    /// A commit's grain calls: <see cref="Done"/> completes when they have all answered, those that failed queued for
    /// repair (it never faults).
    /// </summary>
    private readonly record struct Dispatch(long CommitId, Task Done);

    /// <summary>
    /// A committed flush's batches that stored readings or had implausible ones, each with what it stored, handed from
    /// the commit loop to the dispatching loop. <see cref="Done"/> completes when its grain calls have all answered,
    /// those that failed queued for repair.
    /// </summary>
    private sealed class CommittedFlush(long previousCommitId, long commitId, int readings, (DeviceBatch Batch, BatchOutcome Outcome, long Queued)[] batches)
    {
        public long PreviousCommitId { get; } = previousCommitId;

        public long CommitId { get; } = commitId;

        /// <summary>The readings handed to grains: stored and implausible.</summary>
        public int Readings { get; } = readings;

        /// <summary>The batches, each with when it was handed to the pipeline (a <see cref="Stopwatch"/> timestamp).</summary>
        public (DeviceBatch Batch, BatchOutcome Outcome, long Queued)[] Batches { get; } = batches;

        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>The flush's batches for grains (the loop's lists are reused), or null when it has none.</summary>
        public static CommittedFlush? Of(long previousCommitId, long commitId, List<PendingBatch> flush, BatchOutcome[] outcomes)
        {
            var count = 0;
            var readings = 0;
            for (var i = 0; i < flush.Count; i++)
            {
                var forGrains = outcomes[i].Stored.Length + outcomes[i].Quarantined.Length;
                count += forGrains > 0 ? 1 : 0;
                readings += forGrains;
            }

            if (count == 0)
            {
                return null;
            }

            var batches = new (DeviceBatch, BatchOutcome, long)[count];
            for (int i = 0, j = 0; i < flush.Count; i++)
            {
                if (outcomes[i].Stored.Length + outcomes[i].Quarantined.Length > 0)
                {
                    batches[j++] = (flush[i].Batch, outcomes[i], flush[i].Queued);
                }
            }

            return new CommittedFlush(previousCommitId, commitId, readings, batches);
        }
    }

    private sealed class PatientParts
    {
        /// <summary>When the earliest of the patient's batches in the flush was handed to the pipeline.</summary>
        public long FirstQueued { get; set; }

        public List<ReadOnlyMemory<VitalReading>> Stored { get; } = [];

        public List<ReadOnlyMemory<VitalReading>> Implausible { get; } = [];
    }

    private sealed class PendingBatch(DeviceBatch batch)
    {
        private CancellationTokenRegistration _caller;

        public DeviceBatch Batch { get; } = batch;

        public long Queued { get; } = Stopwatch.GetTimestamp();

        public TaskCompletionSource<CommitResult> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>Stops the caller's wait (not the commit) when <paramref name="cancellationToken"/> is cancelled.</summary>
        public void StopWaitingOn(CancellationToken cancellationToken) =>
            _caller = cancellationToken.UnsafeRegister(static (state, token) => ((PendingBatch)state!).Completion.TrySetCanceled(token), this);

        /// <summary>Lets the caller's token go once the batch is answered (without waiting for a callback under way).</summary>
        public void Answered() => _caller.Unregister();
    }
}
