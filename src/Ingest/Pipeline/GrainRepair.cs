using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Telemetry.Core.Grains;
using Telemetry.Core.Storage;

namespace Telemetry.Ingest.Pipeline;

/// <summary>
/// Makes patient grains whole where committed readings may never have reached them. A batch is acknowledged at its
/// commit, before its grain call answers, so a crash can lose calls whose readings are stored; a call can fail or time
/// out; a commit the store failed can still have stored readings, which come back as duplicates and go to no grain. A
/// grain rebuilds only yesterday and today from the raw store, and only when it activates: older windows (a backfill)
/// would stay without those readings for good.
/// <para>
/// So the commits whose calls are not known to have been applied are repaired: the store lists the minutes they stored
/// readings in (<see cref="ICommitLog"/>) and each patient's grain recomputes them (<see cref="IPatientGrain.RecomputeAsync"/>).
/// A patient whose repair fails is tried again later (after 1 s, doubling to 5 minutes, as soon as the store recovers),
/// while the others go on; after <see cref="MaxAttempts"/> tries, and at least <see cref="MinTimeBeforeGivingUp"/> of
/// failing, it is given up, with an error in the log,
/// so that one broken patient does not hold back the mark for good. A durable mark records the commit through which
/// every call was applied or repaired; on start, everything after it is repaired. The mark is saved about once a
/// second, so it lags a little, which costs only a repair not needed. With a store that shows a commit a moment after
/// answering it, a repair waits <c>settleDelay</c> first; and the late windows a grain call recomputed from such a
/// store (which may not have shown the call's readings yet) are recomputed again once that delay has passed, the mark
/// held before their commit until then. The commits applied within that delay before a stop were applied by grains
/// since gone, and a grain activating after the start may rebuild without them: on start their minutes are settled
/// from the store once it shows them (<see cref="IPatientGrain.SettleRebuiltAsync"/>). So are, for its patient, those
/// applied within that delay before a grain rebuilt in the middle of its life: a failed call starts the grain over (the
/// next activation rebuilds), and a repair may rebuild it.
/// </para>
/// </summary>
internal sealed partial class GrainRepair(
    ICommitLog log,
    IGrainFactory grains,
    IngestInstruments instruments,
    ILogger logger,
    Func<long> appliedThrough,
    Func<long> lastCommitted,
    TimeSpan settleDelay)
{
    private const int MaxAttempts = 12;

    // A range is given up only once it has also been failing this long: retries a recovering store makes due at once
    // (RetryNow) do not use up its tries in seconds while the store flaps.
    private static readonly TimeSpan MinTimeBeforeGivingUp = TimeSpan.FromMinutes(20);
    private static readonly TimeSpan FirstRetryDelay = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan MaxRetryDelay = TimeSpan.FromMinutes(5);
    private static readonly TimeSpan SaveInterval = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan StopWait = TimeSpan.FromSeconds(5);

    // A patient's minutes go to its grain in calls of at most this many; this many calls are made at a time.
    private const int MaxMinutesPerCall = 10_000;
    private const int MaxCallsAtOnce = 8;

    // Unsettled minutes a patient's calls report within this long are recomputed in one call.
    private static readonly TimeSpan UnsettledGathering = TimeSpan.FromSeconds(1);

    private readonly Lock _lock = new();

    // Commit ranges still to repair (not those being repaired), in order of their start.
    private readonly List<CommitRange> _pending = [];
    private readonly List<CommitRange> _repairing = [];
    private readonly SemaphoreSlim _signal = new(0);
    private Task _loop = Task.CompletedTask;
    private long _saved = -1;
    private long _lastSaveTimestamp;
    private Task _saving = Task.CompletedTask;

    /// <summary>
    /// Reads where the commit log stands, queues the repair of the commits after its mark (and the settling of those
    /// applied just before it that the store may not show whole yet), and starts repairing once
    /// <paramref name="ready"/> is cancelled (the host started: grains can be called). Returns the last commit.
    /// </summary>
    public async Task<long> StartAsync(CancellationToken ready, CancellationToken stopping)
    {
        var position = await log.ReadPositionAsync(stopping);
        _saved = position.AppliedThrough;
        if (position.ShownThrough < position.AppliedThrough)
        {
            // Applied just before the stop, by grains since gone: one activating now may rebuild before the store shows
            // them whole, so their minutes are settled from the store once it does.
            LogSettlingAfterStart(logger, position.ShownThrough, position.AppliedThrough);
            AddRebuilt(position.ShownThrough, position.AppliedThrough);
        }

        if (position.AppliedThrough < position.LastCommitId)
        {
            LogRepairingAfterStart(logger, position.LastCommitId - position.AppliedThrough, position.AppliedThrough);
            Add(position.AppliedThrough, position.LastCommitId, patients: null);
        }

        // On the thread pool: the caller is the commit loop, on a thread of its own that the repair must not share.
        _loop = Task.Run(() => RunAsync(ready, stopping), CancellationToken.None);
        return position.LastCommitId;
    }

    /// <summary>
    /// Queues the repair of the commits in (<paramref name="after"/>, <paramref name="through"/>], for
    /// <paramref name="patients"/> only when given. Ranges that meet are merged into one.
    /// </summary>
    public void Add(long after, long through, IReadOnlyCollection<string>? patients) =>
        Queue(new CommitRange(after, through, patients?.ToHashSet(StringComparer.Ordinal), NotBefore: DueIn(settleDelay), Attempts: 0));

    /// <summary>
    /// Queues, for once <c>settleDelay</c> has passed, the settling of the commits applied that the store may not show
    /// whole yet: some grains that applied them are gone (a server left the cluster), and one activating elsewhere may
    /// rebuild without them (<see cref="IPatientGrain.SettleRebuiltAsync"/>). Nothing with a store that shows a commit
    /// at once.
    /// </summary>
    public void SettleRecentlyApplied()
    {
        var applied = appliedThrough();
        var shown = log.ShownWholeThrough();
        if (shown < applied)
        {
            LogSettlingRecentlyApplied(logger, shown, applied);
            AddRebuilt(shown, applied);
        }
    }

    /// <summary>
    /// Queues the repair of commit <paramref name="commitId"/> for <paramref name="patients"/>, whose grain calls failed;
    /// and, for once <c>settleDelay</c> has passed, the settling of the commits those grains applied that the store may
    /// not show whole yet: a failed call starts its grain over, and the next activation rebuilds without them.
    /// </summary>
    public void CallsFailed(long previousCommitId, long commitId, IReadOnlyCollection<string> patients)
    {
        var shown = log.ShownWholeThrough();
        Add(previousCommitId, commitId, patients);
        SettleRebuilt(shown, patients);
    }

    /// <summary>
    /// Queues, for once <c>settleDelay</c> has passed, the settling of the commits after <paramref name="shown"/> (the
    /// last one the store showed whole before the grains of <paramref name="patients"/> rebuilt, or may have) through
    /// the last one made: the grains may have applied some of them before the rebuild, which then lacked them.
    /// </summary>
    private void SettleRebuilt(long shown, IReadOnlyCollection<string> patients)
    {
        var last = lastCommitted();
        if (shown < last && patients.Count > 0)
        {
            LogSettlingRebuilt(logger, patients.Count, shown, last);
            AddRebuilt(shown, last, patients);
        }
    }

    /// <summary>Queues a <see cref="CommitRange.Rebuilt"/> range, merged with those waiting that it meets.</summary>
    private void AddRebuilt(long after, long through, IReadOnlyCollection<string>? patients = null) =>
        Queue(new CommitRange(after, through, patients?.ToHashSet(StringComparer.Ordinal), DueIn(settleDelay), Attempts: 0) { Rebuilt = true });

    /// <summary>
    /// Queues a new range of repair or settling, merged with the waiting ranges of its kind that it meets and that are
    /// not being retried: a run of failed calls under load becomes one range, one query. (A retry keeps its own pace.)
    /// A merged range is due once its newest commits have settled, as a repair that read them sooner could find them
    /// not yet shown whole; and a range takes in new ones only within <c>settleDelay</c> of its first, so calls that
    /// keep failing start a range of their own rather than put the first off for good.
    /// </summary>
    private void Queue(CommitRange range)
    {
        var settle = (long)(settleDelay.TotalSeconds * Stopwatch.Frequency);
        range = range with { FirstDue = range.NotBefore };
        lock (_lock)
        {
            for (var i = _pending.Count - 1; i >= 0; i--)
            {
                var other = _pending[i];
                if (other.Attempts == 0 && other.Minutes is null && other.Rebuilt == range.Rebuilt
                    && other.After <= range.Through && range.After <= other.Through && range.NotBefore - other.FirstDue <= settle)
                {
                    range = range with
                    {
                        NotBefore = Math.Max(range.NotBefore, other.NotBefore),
                        FirstDue = Math.Min(range.FirstDue, other.FirstDue),
                        After = Math.Min(range.After, other.After),
                        Through = Math.Max(range.Through, other.Through),
                        Patients = range.Patients is null || other.Patients is null ? null : [.. range.Patients, .. other.Patients],
                    };
                    _pending.RemoveAt(i);
                }
            }

            Insert(range);
        }

        _signal.Release();
    }

    /// <summary>
    /// Queues, for once <c>settleDelay</c> has passed, the recomputing of the late <paramref name="minutes"/> the grain
    /// call of <paramref name="patientId"/> in commit <paramref name="commitId"/> recomputed before the store may have
    /// shown them whole. The minutes a patient's calls report within about a second go in one call.
    /// </summary>
    public void AddUnsettled(string patientId, long commitId, CommittedMinute[] minutes)
    {
        var now = Stopwatch.GetTimestamp();
        var range = new CommitRange(commitId - 1, commitId, [patientId], DueIn(settleDelay), Attempts: 0, minutes)
        {
            GatherUntil = now + (long)(UnsettledGathering.TotalSeconds * Stopwatch.Frequency),
        };
        lock (_lock)
        {
            // Into the patient's range still gathering, if any: it keeps its time of gathering, so it is due at most
            // that long after its first minutes were due. Calls can answer out of commit order (the first calls to a
            // grain still being placed have been seen to run in another order): the range then starts before the
            // earlier commit, so that the mark stays before it until its minutes are settled.
            var at = _pending.FindLastIndex(other => other.Minutes is not null && other.Attempts == 0 && now < other.GatherUntil
                && other.Patients!.Contains(patientId) && other.Minutes.Length + minutes.Length <= MaxMinutesPerCall);
            if (at >= 0)
            {
                var other = _pending[at];
                _pending.RemoveAt(at);
                range = other with
                {
                    After = Math.Min(range.After, other.After),
                    Through = Math.Max(range.Through, other.Through),
                    NotBefore = range.NotBefore,
                    Minutes = [.. other.Minutes!.Concat(minutes).DistinctBy(minute => (minute.Kind, minute.MinuteStartMs))],
                };
            }

            Insert(range);
        }

        _signal.Release();
    }

    /// <summary>
    /// Saves the mark, at most about once a second and one save at a time: <paramref name="appliedThrough"/> (every
    /// commit through it has had its grain calls answered), held back before any commit still to be repaired.
    /// </summary>
    public void SaveSoon(long appliedThrough)
    {
        lock (_lock)
        {
            if (!_saving.IsCompleted || Stopwatch.GetElapsedTime(_lastSaveTimestamp) < SaveInterval)
            {
                return;
            }

            _lastSaveTimestamp = Stopwatch.GetTimestamp();
            _saving = Task.Run(() => SaveAsync(appliedThrough));
        }
    }

    /// <summary>
    /// Makes every repair waiting to be tried again due now (the store has recovered), or once <c>settleDelay</c> has
    /// passed; a repair not tried yet keeps its own wait.
    /// </summary>
    public void RetryNow()
    {
        lock (_lock)
        {
            var due = DueIn(settleDelay);
            for (var i = 0; i < _pending.Count; i++)
            {
                if (_pending[i].Attempts > 0)
                {
                    _pending[i] = _pending[i] with { NotBefore = Math.Min(_pending[i].NotBefore, due) };
                }
            }
        }

        _signal.Release();
    }

    /// <summary>
    /// Once the pipeline has stopped: lets a repair under way end (for a few seconds at most; what it has not finished
    /// stays behind the mark) and saves the mark once more.
    /// </summary>
    public async Task SaveLastAsync(long appliedThrough)
    {
        await _loop.WaitAsync(StopWait).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        Task saving;
        lock (_lock)
        {
            saving = _saving;
        }

        await saving;
        await SaveAsync(appliedThrough);
    }

    private async Task SaveAsync(long appliedThrough)
    {
        long mark;
        lock (_lock)
        {
            mark = appliedThrough;
            foreach (var range in _pending)
            {
                mark = Math.Min(mark, range.After);
            }

            foreach (var range in _repairing)
            {
                mark = Math.Min(mark, range.After);
            }
        }

        if (mark <= _saved)
        {
            return;
        }

        try
        {
            await log.SaveAppliedThroughAsync(mark);
            _saved = mark;
        }
        catch (Exception exception)
        {
            // The older mark stands: a restart repairs a little more than it needs to.
            LogSaveFailed(logger, exception);
        }
    }

    private async Task RunAsync(CancellationToken ready, CancellationToken stopping)
    {
        try
        {
            using (var readyOrStopping = CancellationTokenSource.CreateLinkedTokenSource(ready, stopping))
            {
                await Task.Delay(Timeout.Infinite, readyOrStopping.Token).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }

            await RecoverOpenWindowsAsync(stopping);

            while (!stopping.IsCancellationRequested)
            {
                var ranges = TakeDue(out var wait);
                if (ranges.Count == 0)
                {
                    // Nothing due: wait for a new range, or for the earliest retry to come due.
                    await _signal.WaitAsync(wait, stopping);
                    continue;
                }

                // The store as it stood before the calls: those that rebuild a grain (or fail, starting it over) may
                // find it without the last commits the grain applied.
                var shown = log.ShownWholeThrough();
                var rebuilt = new HashSet<string>(StringComparer.Ordinal);
                var failures = ranges[0].Minutes is null ? [await RepairAsync(ranges[0], rebuilt, stopping)] : await SettleAsync(ranges, rebuilt);
                SettleRebuilt(shown, rebuilt);
                lock (_lock)
                {
                    _repairing.Clear();
                    for (var i = 0; i < ranges.Count; i++)
                    {
                        Retry(ranges[i], failures[i]);
                    }
                }

                // Idle ingest saves no mark; a repair done is worth saving.
                SaveSoon(appliedThrough());
            }
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
            // What is not repaired stays behind the mark, for the next start.
        }
    }

    /// <summary>
    /// Has each patient whose grain held windows open at an unclean stop recompute them from the raw store (the last
    /// minute of each vital on each of the days concerned: its minute, hour and day), <see cref="MaxCallsAtOnce"/> calls
    /// at a time, a failed one tried again twice. Once all have, the log records it; otherwise the next start tries again.
    /// </summary>
    private async Task RecoverOpenWindowsAsync(CancellationToken stopping)
    {
        // Read once the host has started, off the commit loop's start: the read goes through the readings of the last
        // days, and ingest (and the usual repair) must not wait for it, nor lose the repair if it fails.
        IReadOnlyList<PatientMinute> openAtStop;
        try
        {
            openAtStop = await log.MinutesOpenAtStopAsync(stopping);
        }
        catch (Exception exception) when (!stopping.IsCancellationRequested)
        {
            LogOpenWindowsNotRecovered(logger, exception, 0, "the minutes could not be listed");
            return;
        }

        if (openAtStop.Count == 0)
        {
            // Nothing left open (a clean stop, no readings, or a log that cannot tell): nothing for a next start either.
            log.OpenWindowsRecovered();
            return;
        }

        var patients = openAtStop.Select(minute => minute.PatientId).Distinct(StringComparer.Ordinal).Count();
        LogRecoveringOpenWindows(logger, patients);
        var remaining = openAtStop.GroupBy(minute => minute.PatientId, StringComparer.Ordinal)
            .Select(patient => (PatientId: patient.Key, Minutes: patient.Select(minute => minute.Minute).ToArray()))
            .ToList();
        for (var attempt = 0; attempt < 3 && remaining.Count > 0 && !stopping.IsCancellationRequested; attempt++)
        {
            if (attempt > 0)
            {
                await Task.Delay(FirstRetryDelay * attempt, stopping);
            }

            var failed = new List<(string PatientId, CommittedMinute[] Minutes)>();
            foreach (var chunk in remaining.Chunk(MaxCallsAtOnce))
            {
                var calls = chunk.Select(patient => grains.GetGrain<IPatientGrain>(patient.PatientId).RecomputeAsync(patient.Minutes)).ToArray();
                for (var i = 0; i < calls.Length; i++)
                {
                    if (!await SucceededAsync(calls[i], chunk[i].PatientId))
                    {
                        failed.Add(chunk[i]);
                    }
                }
            }

            remaining = failed;
        }

        if (remaining.Count == 0)
        {
            log.OpenWindowsRecovered();
            LogRecoveredOpenWindows(logger, patients);
        }
        else
        {
            LogOpenWindowsNotRecovered(logger, null, remaining.Count, string.Join(", ", remaining.Take(10).Select(patient => patient.PatientId)));
        }
    }

    /// <summary>Queues a range whose repair failed for <paramref name="failed"/> again, or gives it up (under the lock).</summary>
    private void Retry(CommitRange range, HashSet<string>? failed)
    {
        if (failed is null)
        {
            return;
        }

        var firstFailed = range.FirstFailed == 0 ? Stopwatch.GetTimestamp() : range.FirstFailed;
        if (range.Attempts + 1 >= MaxAttempts && Stopwatch.GetElapsedTime(firstFailed) >= MinTimeBeforeGivingUp)
        {
            // Given up: these windows may lack those readings until the patient's readings are sent again.
            LogRepairGivenUp(logger, range.After, range.Through, string.Join(", ", failed.Count == 0 ? (IEnumerable<string>)["all patients"] : failed.Take(10)));
            return;
        }

        // Tried again later, for the patients whose repair failed only; the others go on meanwhile.
        var delay = TimeSpan.FromTicks(Math.Min(MaxRetryDelay.Ticks, FirstRetryDelay.Ticks << Math.Min(range.Attempts, 16)));
        if (range.Rebuilt && failed.Count > 0)
        {
            // The failed calls started those grains over, and their next activation may not see the commits they applied
            // since the range was queued: settled too, once the store shows them.
            range = range with { Through = Math.Max(range.Through, lastCommitted()) };
            delay = delay < settleDelay ? settleDelay : delay;
        }

        Insert(range with
        {
            Patients = failed.Count == 0 ? range.Patients : failed,
            NotBefore = DueIn(delay),
            Attempts = range.Attempts + 1,
            FirstFailed = firstFailed,
        });
    }

    private static long DueIn(TimeSpan delay) => delay <= TimeSpan.Zero ? 0 : Stopwatch.GetTimestamp() + (long)(delay.TotalSeconds * Stopwatch.Frequency);

    /// <summary>Inserts <paramref name="range"/> in order of start (under the lock).</summary>
    private void Insert(CommitRange range)
    {
        var at = _pending.FindIndex(other => other.After > range.After);
        _pending.Insert(at < 0 ? _pending.Count : at, range);
    }

    /// <summary>
    /// Takes the lowest range that is due, with, when it is one of unsettled minutes, the next such ranges due (up to
    /// <see cref="MaxCallsAtOnce"/>, a call each); or, when none is due, says how long until the first one is.
    /// </summary>
    private List<CommitRange> TakeDue(out TimeSpan wait)
    {
        lock (_lock)
        {
            var now = Stopwatch.GetTimestamp();
            wait = Timeout.InfiniteTimeSpan;
            for (var i = 0; i < _pending.Count && _repairing.Count < MaxCallsAtOnce; i++)
            {
                var range = _pending[i];
                if (range.NotBefore <= now && (_repairing.Count == 0 || (range.Minutes is not null && _repairing[0].Minutes is not null)))
                {
                    _pending.RemoveAt(i--);
                    _repairing.Add(range);
                    if (range.Minutes is null)
                    {
                        break;
                    }
                }
                else if (range.NotBefore > now)
                {
                    var untilDue = TimeSpan.FromSeconds((double)(range.NotBefore - now) / Stopwatch.Frequency);
                    wait = wait == Timeout.InfiniteTimeSpan || untilDue < wait ? untilDue : wait;
                }
            }

            return [.. _repairing];
        }
    }

    /// <summary>
    /// Has each range's patient recompute its unsettled minutes, all at once. Returns, per range, null when it
    /// succeeded, else the patient (also added to <paramref name="rebuilt"/>: the failed call started its grain over).
    /// </summary>
    private async Task<HashSet<string>?[]> SettleAsync(List<CommitRange> ranges, HashSet<string> rebuilt)
    {
        var calls = ranges.Select(range => grains.GetGrain<IPatientGrain>(range.Patients!.Single()).SettleAsync(range.Minutes!)).ToArray();
        var failures = new HashSet<string>?[ranges.Count];
        for (var i = 0; i < calls.Length; i++)
        {
            var patient = ranges[i].Patients!.Single();
            if (await SucceededAsync(calls[i], patient) is false)
            {
                failures[i] = [patient];
                rebuilt.Add(patient);
            }
            else
            {
                SettleAgain(patient, calls[i].Result);
            }
        }

        return failures;
    }

    /// <summary>
    /// The minutes a settle recomputed while the store may not have shown a commit the grain applied a moment before
    /// (see <see cref="IPatientGrain.SettleAsync"/>): settled again once it shows it.
    /// </summary>
    private void SettleAgain(string patientId, CommittedMinute[] minutes)
    {
        if (minutes.Length > 0)
        {
            AddUnsettled(patientId, minutes.Min(minute => minute.FirstCommitId), minutes);
        }
    }

    /// <summary>Awaits a repair call; a failed one (faulted, or cancelled by a timeout) is counted and logged.</summary>
    private async Task<bool> SucceededAsync(Task call, string patientId)
    {
        await call.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        if (call.IsCompletedSuccessfully)
        {
            return true;
        }

        instruments.GrainCallFailed();
        LogRepairCallFailed(logger, call.Exception?.GetBaseException() ?? new TaskCanceledException(call), patientId);
        return false;
    }

    /// <summary>
    /// Has every patient with readings in <paramref name="range"/> recompute their minutes. Returns null when all
    /// succeeded; else the patients whose calls failed (empty when the store could not list the minutes). The patients
    /// whose grains rebuilt from the store to recompute, or whose calls failed, are added to <paramref name="rebuilt"/>.
    /// </summary>
    private async Task<HashSet<string>?> RepairAsync(CommitRange range, HashSet<string> rebuilt, CancellationToken cancellationToken)
    {
        var failed = new HashSet<string>(StringComparer.Ordinal);
        var made = 0;
        var calls = new List<(string PatientId, Task Call)>(MaxCallsAtOnce);
        var minutes = new List<CommittedMinute>();
        string? patientId = null;

        async Task AwaitCallsAsync()
        {
            foreach (var (patient, call) in calls)
            {
                if (!await SucceededAsync(call, patient))
                {
                    failed.Add(patient);
                    if (!range.Rebuilt)
                    {
                        // (A settling that failed takes in the commits since when it is tried again: see Retry.)
                        rebuilt.Add(patient);
                    }
                }
                else if (call is Task<bool> { Result: true })
                {
                    rebuilt.Add(patient);
                }
                else if (call is Task<CommittedMinute[]> settled)
                {
                    SettleAgain(patient, settled.Result);
                }
            }

            calls.Clear();
        }

        async Task CallAsync()
        {
            if (patientId is null || minutes.Count == 0)
            {
                return;
            }

            var grain = grains.GetGrain<IPatientGrain>(patientId);
            calls.Add((patientId, range.Rebuilt ? grain.SettleRebuiltAsync([.. minutes]) : grain.RecomputeAsync([.. minutes])));
            minutes.Clear();
            made++;
            if (calls.Count == MaxCallsAtOnce)
            {
                await AwaitCallsAsync();
            }
        }

        try
        {
            await foreach (var (patient, minute) in log.MinutesCommittedAsync(range.After, range.Through, cancellationToken))
            {
                if (range.Patients is { } only && !only.Contains(patient))
                {
                    continue;
                }

                if (patient != patientId || minutes.Count == MaxMinutesPerCall)
                {
                    await CallAsync();
                    patientId = patient;
                }

                minutes.Add(minute);
            }

            await CallAsync();
        }
        catch (Exception exception) when (!cancellationToken.IsCancellationRequested)
        {
            // The minutes could not be listed: the whole range again, later.
            LogRepairFailed(logger, exception, range.After, range.Through);
            await AwaitCallsAsync();
            return [];
        }

        await AwaitCallsAsync();
        instruments.GrainCallsMadeWhole(made - failed.Count);
        if (failed.Count > 0)
        {
            return failed;
        }

        LogRepaired(logger, range.After, range.Through, made);
        return null;
    }

    [LoggerMessage(EventId = 1003, Level = LogLevel.Warning, Message = "Patient grains may lack the readings of {Commits} commits after commit {AppliedThrough} (the server stopped before their calls were known to be applied): recomputing their windows from the raw store")]
    private static partial void LogRepairingAfterStart(ILogger logger, long commits, long appliedThrough);

    [LoggerMessage(EventId = 1010, Level = LogLevel.Information, Message = "Patient grains activating now may not see the last commits applied before the stop, after commit {ShownThrough} to {AppliedThrough}, in the raw store yet: settling their windows from it once it shows them")]
    private static partial void LogSettlingAfterStart(ILogger logger, long shownThrough, long appliedThrough);

    [LoggerMessage(EventId = 1011, Level = LogLevel.Information, Message = "A server left the cluster: the grains it held may come back elsewhere before the raw store shows the commits applied after commit {ShownThrough} to {AppliedThrough}; settling their windows from it once it shows them")]
    private static partial void LogSettlingRecentlyApplied(ILogger logger, long shownThrough, long appliedThrough);

    [LoggerMessage(EventId = 1014, Level = LogLevel.Debug, Message = "{Patients} patient grains rebuilt from the raw store (a failed call started them over, or a repair rebuilt them) before it may have shown the commits after commit {ShownThrough} to {LastCommitId}: settling their windows from it once it shows them")]
    private static partial void LogSettlingRebuilt(ILogger logger, int patients, long shownThrough, long lastCommitId);

    [LoggerMessage(EventId = 1004, Level = LogLevel.Information, Message = "Recomputed the windows of commits {After} (exclusive) to {Through} in {Calls} patient grain calls")]
    private static partial void LogRepaired(ILogger logger, long after, long through, int calls);

    [LoggerMessage(EventId = 1005, Level = LogLevel.Warning, Message = "Listing the minutes of commits {After} (exclusive) to {Through} failed; trying again later")]
    private static partial void LogRepairFailed(ILogger logger, Exception exception, long after, long through);

    [LoggerMessage(EventId = 1008, Level = LogLevel.Warning, Message = "Recomputing the windows of patient {PatientId} failed; trying again later")]
    private static partial void LogRepairCallFailed(ILogger logger, Exception exception, string patientId);

    [LoggerMessage(EventId = 1009, Level = LogLevel.Error, Message = "Gave up recomputing the windows of commits {After} (exclusive) to {Through} for {Patients}: their minute, hour and day trends may lack readings the raw store has")]
    private static partial void LogRepairGivenUp(ILogger logger, long after, long through, string patients);

    [LoggerMessage(EventId = 1015, Level = LogLevel.Warning, Message = "The server before did not stop cleanly: the open windows of {Patients} patients' last days were in its memory only; recomputing them from the raw store")]
    private static partial void LogRecoveringOpenWindows(ILogger logger, int patients);

    [LoggerMessage(EventId = 1016, Level = LogLevel.Information, Message = "Recomputed the windows the unclean stop left open, of {Patients} patients")]
    private static partial void LogRecoveredOpenWindows(ILogger logger, int patients);

    [LoggerMessage(EventId = 1017, Level = LogLevel.Error, Message = "Recomputing the windows left open by the unclean stop failed for {Count} patients ({Patients}); the next start tries again")]
    private static partial void LogOpenWindowsNotRecovered(ILogger logger, Exception? exception, int count, string patients);

    [LoggerMessage(EventId = 1006, Level = LogLevel.Warning, Message = "Saving how far patient grains have applied the commits failed; a restart repairs from the mark saved before")]
    private static partial void LogSaveFailed(ILogger logger, Exception exception);

    /// <summary>
    /// Commits (<see cref="After"/>, <see cref="Through"/>] to repair, for <see cref="Patients"/> only when set; due at
    /// Stopwatch timestamp <see cref="NotBefore"/>. With <see cref="Minutes"/>, only those late minutes of the one
    /// patient are recomputed (<see cref="IPatientGrain.SettleAsync"/>), without asking the commit log. A
    /// <see cref="Rebuilt"/> range's commits were applied, but perhaps not shown to a rebuild since
    /// (<see cref="IPatientGrain.SettleRebuiltAsync"/>).
    /// </summary>
    private sealed record CommitRange(long After, long Through, HashSet<string>? Patients, long NotBefore, int Attempts, CommittedMinute[]? Minutes = null)
    {
        public bool Rebuilt { get; init; }

        /// <summary>When the first of the ranges merged into this one came due (Stopwatch timestamp; 0: at once).</summary>
        public long FirstDue { get; init; }

        /// <summary>For unsettled minutes: the Stopwatch timestamp until which more of the patient's join this range.</summary>
        public long GatherUntil { get; init; }

        /// <summary>When its repair first failed (Stopwatch timestamp; 0: it has not).</summary>
        public long FirstFailed { get; init; }
    }
}
