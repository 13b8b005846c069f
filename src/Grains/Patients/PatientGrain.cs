using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using Orleans.Concurrency;
using Telemetry.Core.Alerts;
using Telemetry.Core.Grains;
using Telemetry.Core.Readings;
using Telemetry.Core.Rollups;
using Telemetry.Core.Storage;
using Telemetry.Core.Vitals;
using Telemetry.Grains.Alerts;

namespace Telemetry.Grains.Patients;

/// <summary>
/// A patient's live picture. Every reading it sees is already committed to the raw store, so all it holds is derived:
/// on activation it rebuilds yesterday and today from the raw store (rewriting their closed rollups, which a crash may
/// have kept from the store), and a reading that arrives late for a closed window, or from before the rebuilt range,
/// has the windows it falls in recomputed from the raw store. When anything fails the grain deactivates, so the next
/// call rebuilds it rather than building on a gap. Readings whose call never arrived (a crash after their commit, a call
/// that timed out) are made whole by the ingest pipeline's repair (<see cref="RecomputeAsync"/>); with a store that shows
/// a commit a while after answering it, the late windows a call recomputed are recomputed again later (<see cref="SettleAsync"/>).
/// Windows still open when their day has ended are written then, so a crash days later does not take them.
/// <para>
/// It also runs the patient's alert rules on every reading it is handed, and on a timer for what depends on the clock
/// alone. Alert state is persisted grain state: each change is written with its events (an outbox) before the events
/// go to the alert store and on to subscribers, so an alert raised is never lost and never raised twice by a crash.
/// </para>
/// </summary>
public sealed partial class PatientGrain(
    [PersistentState("alerts", GrainStorageNames.Durable)] IPersistentState<AlertState> alertState,
    IRawSeriesStore rawStore,
    IRollupStore rollupStore,
    IAlertStore alertStore,
    IAlertPublisher alertPublisher,
    TimeProvider timeProvider,
    GrainInstruments instruments,
    ILogger<PatientGrain> logger) : Grain, IPatientGrain, IClosedWindows
{
    // The alert timer wakes at least this often while anything waits on the clock, which also keeps the grain active.
    private static readonly TimeSpan MaxTimerDelay = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan TimerRetryDelay = TimeSpan.FromSeconds(5);

    // While a sustain or a recovery is under way, the alert state is written at least this often (it is otherwise
    // written with events only): an activation after a crash judges again only the readings after what was written, and
    // at most the last 15 minutes of them, so a longer sustain (glucose over 250 for two hours) would start over.
    private const long SustainCheckpointMs = 5 * 60_000;

    // How far before what is news an activation reads the stored readings after a spot check's sustain under way (see
    // JudgeUnjudgedAsync): one that stands longer (a custom sustain or re-arm of hours) is not read back further.
    private const long AloneLookbackMs = 60 * 60_000;

    // How often a grain that gave its activation up tries to come back (ComeBackWhenPossible): about a day at a minute apart.
    private const int MaxWakeAttempts = 1_440;

    // When this server began to activate patients, by its clock (the earliest activation; every patient with rules is
    // activated at start): a no-data rule gives devices a while after it to come back (none could send while the server
    // was down), however often a patient's grain activates after. In a cluster, a grain moved to a server that started
    // later waits as after a restart. Kept per clock, so that silos sharing a process with clocks of their own (tests)
    // each have theirs.
    private static readonly ConditionalWeakTable<TimeProvider, StrongBox<long>> ServerStarts = [];

    /// <summary>How far before the days an activation rebuilds the live view looks for a vital's latest reading.</summary>
    public static readonly TimeSpan EarlierLookback = TimeSpan.FromDays(366);

    // A grain is kept for every active patient, so what it holds is sized to what the patient has: one entry per vital
    // seen (a handful), and the sets below made only when something goes in them (rarely: late readings, a series
    // server's partly read commits).
    private VitalWindows[] _vitals = [];
    private readonly List<Rollup> _closed = [];

    // Minutes late readings fell in, whose closed windows are recomputed from the raw store.
    private HashSet<(VitalKind Kind, long MinuteStartMs)>? _late;

    // Minutes holding readings of commits the activation read, when the store may have shown only part of them:
    // every window over such a minute is recomputed from the store as it closes.
    private HashSet<(VitalKind Kind, long MinuteStartMs)>? _unsettled;

    // Unsettled minutes whose windows closed since the last call returned: taken from a store that may not yet have
    // shown the latest readings in them, they are settled again once it does.
    private HashSet<(VitalKind Kind, long MinuteStartMs)>? _resettle;

    // What the activation rebuilt from the raw store: commits up to this id and readings from this time on (and, in
    // each vital's windows, the last minute it read of that vital).
    private long _rebuiltThroughCommit;
    private long _rebuiltFromMs = long.MaxValue;

    // The latest reading of each vital last seen before the days the activation rebuilt (a weekly cuff, a scale): the
    // read of the rollups, made when the live view is first asked for (most grains are never asked) and shared by the
    // callers while it runs; null until then, and again after a rebuild, which moves those days on.
    private Task<LiveVital[]>? _earlier;

    // The last of those reads that succeeded, shown while a later one cannot be read; and the rebuilds so far, which
    // tell a read begun before one.
    private LiveVital[]? _earlierRead;
    private int _rebuilds;

    // The latest reading of each vital handed in from before the rebuilt days (a backfill), newer than the rollups the
    // read above may have found: made when the first such reading comes.
    private Dictionary<VitalKind, VitalReading>? _lateLatest;

    // With a store that shows a commit a piece at a time: per vital, the times of the readings the rebuild read in the
    // vital's last minute (read on their own, see ReadLastMinutesAsync), while that minute is still open. A reading of
    // the minute handed in later is in the open minute already if its time is among them, and goes in if not.
    private Dictionary<VitalKind, HashSet<long>>? _readInLastMinute;

    // The most readings of one vital's last minute an activation keeps the times of; past them (a vital sampled at
    // over 68 Hz) that minute is settled from the store as it closes, as any other minute a commit was partly read in.
    private const int MaxLastMinuteReadings = 4_096;

    // Late windows are recomputed in stretches split where they lie this far apart (or two windows' length), at most so many.
    private const long LateStretchGapMs = 3_600_000;
    private const int MaxLateStretches = 8;

    // Closed windows written to a store that shows a write a while after answering it, with when they were written: a
    // trend read is served them until the store shows them. Made only with such a store; those it shows by now are
    // forgotten at the next write.
    private List<(Rollup Rollup, long WrittenMs)>? _written;

    // The latest commits applied since the activation: a repair of one of them finds its readings already in the
    // windows, and need not rebuild.
    private readonly RecentCommits _applied = new();

    // With a store that shows a commit a while after answering it: the spans of time the commits applied within that
    // while hold readings of each vital in, with when and which commit (one span per vital and commit, or per minute
    // while a vital streams into it). A settle that recomputes a window over one of them from the store may not see
    // that commit, and hands its minute back to be settled again (see SettleAsync). At most MaxAppliedSpans, the one
    // applied longest ago dropped first (a backfill of many commits at once): a minute it held is then settled once.
    private List<AppliedSpan>? _appliedLately;
    private const int MaxAppliedSpans = 64;

    // Start of the day from which on open windows have not been written: once a day has ended, the windows still open
    // are written, so a crash days later keeps them (an activation rebuilds only yesterday and today); a vital's open
    // day as last written, so a vital that stopped is not written again every night.
    private long _checkpointedBeforeMs;
    private Dictionary<VitalKind, RollupWindow>? _checkpointedDays;

    private AlertEngine _alerts = null!;
    private IGrainTimer? _alertTimer;

    // The turn that writes what an ended day left open, when a read found one (see CheckpointEndedDaysSoon).
    private IGrainTimer? _dayCheckpoint;

    // The alert state as last written still holds events that have since been handed on: the grain writes it again,
    // emptied, as it deactivates, or the next activation would hand them on again.
    private bool _writtenOutboxHandedOn;

    // The rules judged readings since the alert state was last written (how far they judged, a sustain under way): with a
    // sustain under way, the grain writes it as it deactivates, so the next activation carries it on rather than
    // starting it over.
    private bool _judgedSinceWritten;

    // When the alert state was last written, for SustainCheckpointMs.
    private long _alertStateWrittenMs;

    // Counted in the instruments' patients holding open windows: from a whole activation until a deactivation wrote them.
    private bool _holdsOpenWindows;

    private string PatientId => this.GetPrimaryKeyString();

    private long NowMs => timeProvider.GetUtcNow().ToUnixTimeMilliseconds();

    /// <summary>The earliest time <paramref name="clock"/> showed at an activation, <paramref name="nowMs"/> included (see ServerStarts).</summary>
    private static long ServerStarted(TimeProvider clock, long nowMs)
    {
        var started = ServerStarts.GetValue(clock, _ => new StrongBox<long>(nowMs));
        for (var earliest = Volatile.Read(ref started.Value); nowMs < earliest; earliest = Volatile.Read(ref started.Value))
        {
            if (Interlocked.CompareExchange(ref started.Value, nowMs, earliest) == earliest)
            {
                return nowMs;
            }
        }

        return Volatile.Read(ref started.Value);
    }

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        instruments.PatientActivated();
        var now = NowMs;
        var rebuilt = await RebuildAsync(cancellationToken);
        _alerts = new AlertEngine(PatientId, alertState.State);
        _alerts.ForgetStaleSustains(now);
        _alerts.ResumeJudging(now);
        _alerts.StartWatching(ServerStarted(timeProvider, now));
        RestoreJudged(rebuilt.Windows);

        // Readings a crash or a lost call kept from the rules are judged first, in time order, before any new one; then
        // the latest of every vital is taken as seen, without judging.
        await JudgeUnjudgedAsync(cancellationToken);
        foreach (var windows in _vitals)
        {
            if (windows.LatestMs != long.MinValue)
            {
                _alerts.Seed(windows.Kind, windows.LatestMs, windows.LatestValue, now);
            }
        }

        // Events persisted before a crash but perhaps not handed on go now (the store keeps each once), with any just raised;
        // and a spot check's sustain the readings judged again began or broke.
        if (alertState.State.Outbox.Count > 0 || _alerts.AloneChangedSinceRecorded)
        {
            await CommitAlertsAsync(writeState: true);
        }

        ScheduleAlertTimer();
        _holdsOpenWindows = true;
        instruments.OpenWindowsHeld();
        LogRebuilt(logger, PatientId, rebuilt.Windows.Count);
    }

    /// <summary>
    /// Gives the rules each vital's latest reading as they had judged it (to the minute, from the rebuilt minutes), before
    /// they judge again the readings after it: those up to what the state last written says they judged, and those too old
    /// to be judged again (over 15 minutes), which they judged after that write or never will. A score over several vitals
    /// (NEWS2) judged again without a vital that came earlier (a cuff's pressure an hour ago, an SpO2 that fell after the
    /// last write) would fall, and could clear an alert whose condition still holds.
    /// </summary>
    private void RestoreJudged(IReadOnlyList<KindWindow> minutes)
    {
        if (!_alerts.HasRules)
        {
            return;
        }

        var now = NowMs;
        var judgedAgainFrom = now - AlertEngine.StaleAfterMs;
        foreach (var (kind, minute) in minutes)
        {
            if (minute.LastMs <= _alerts.JudgedThroughMs(kind) || minute.LastMs < judgedAgainFrom)
            {
                // One stamped ahead of the clock as of now, as the rules judged it (see AlertEngine.Observe).
                _alerts.Restore(kind, Math.Min(minute.LastMs, now), minute.Last);
            }
        }
    }

    /// <summary>
    /// Rebuilds yesterday's and today's windows from the raw store, and rewrites their closed rollups (which a crash, or
    /// a call that never arrived, may have kept from the store). Returns the minute windows it read.
    /// </summary>
    private async Task<RawAggregate> RebuildAsync(CancellationToken cancellationToken)
    {
        var today = Resolution.Day.WindowStart(NowMs);
        var rebuildFrom = today - Resolution.Day.Milliseconds();

        // An active grain rebuilding (a repair) first writes what it holds from before the days it rebuilds.
        await CheckpointOpenWindowsAsync(endingBy: rebuildFrom, cancellationToken);
        await rawStore.ShowAnsweredWritesAsync(cancellationToken);
        var minutes = await rawStore.AggregateAsync(PatientId, rebuildFrom, long.MaxValue, Resolution.Minute, cancellationToken);
        _readInLastMinute = null;
        if (rawStore.ReadableAfter > TimeSpan.Zero)
        {
            minutes = minutes with { Windows = await ReadLastMinutesAsync(minutes.Windows, cancellationToken) };
        }

        _checkpointedDays = null;
        _applied.Clear();
        _rebuiltThroughCommit = minutes.HighestCommitId;
        _rebuiltFromMs = rebuildFrom;
        _earlier = null;
        _rebuilds++;
        _checkpointedBeforeMs = today;
        _vitals = [.. minutes.Windows.GroupBy(window => window.Kind).Select(group =>
            VitalWindows.Rebuild(group.Key, [.. group.Select(window => window.Window).OrderBy(window => window.StartMs)], this))];

        await FlushClosedAsync(cancellationToken);
        return minutes;
    }

    /// <summary>
    /// With a store that shows a commit a piece at a time, the rebuild's last minute of a vital may hold part of a
    /// commit whose call comes after it: which of that commit's readings it holds is not known, and while the minute is
    /// open nothing settles it from the store (a device that stops sending keeps it open, short, for as long as the
    /// grain lives). So each vital's last minute is read again, reading by reading, and taken as read; the times kept
    /// tell a reading handed in later that is already in it from one that is not. Returns the minutes with those
    /// replaced.
    /// </summary>
    private async Task<IReadOnlyList<KindWindow>> ReadLastMinutesAsync(IReadOnlyList<KindWindow> minutes, CancellationToken cancellationToken)
    {
        var last = new Dictionary<VitalKind, long>();
        foreach (var (kind, window) in minutes)
        {
            if (!last.TryGetValue(kind, out var startMs) || window.StartMs > startMs)
            {
                last[kind] = window.StartMs;
            }
        }

        // Vitals whose last minute is the same (a watch's, as a rule) are read together. A vital with more readings in
        // it than are kept, or with two at one time (two devices), is left as the aggregate had it.
        var read = new Dictionary<VitalKind, (RollupWindow Window, HashSet<long>? Times)>();
        foreach (var group in last.GroupBy(entry => entry.Value, entry => entry.Key))
        {
            var startMs = group.Key;
            var kinds = group.ToArray();
            await foreach (var reading in rawStore.StreamAsync(PatientId, kinds, startMs, startMs + Resolution.Minute.Milliseconds(), cancellationToken))
            {
                if (!read.TryGetValue(reading.Kind, out var found))
                {
                    read[reading.Kind] = (RollupWindow.Of(startMs, reading.TimestampMs, reading.Value), [reading.TimestampMs]);
                }
                else if (found.Times is not null)
                {
                    var kept = found.Times.Count < MaxLastMinuteReadings && found.Times.Add(reading.TimestampMs);
                    read[reading.Kind] = (found.Window.Add(reading.TimestampMs, reading.Value), kept ? found.Times : null);
                }
            }
        }

        foreach (var (kind, found) in read)
        {
            if (found.Times is not null)
            {
                (_readInLastMinute ??= [])[kind] = found.Times;
            }
        }

        return _readInLastMinute is null
            ? minutes
            : [.. minutes.Select(minute => minute.Window.StartMs == last[minute.Kind] && _readInLastMinute.TryGetValue(minute.Kind, out _)
                ? minute with { Window = read[minute.Kind].Window }
                : minute)];
    }

    /// <summary>
    /// Whether <paramref name="reading"/>, of a vital's last minute as the rebuild read it again, is in the open minute
    /// already (it is then taken off the times kept); null when the reading is not of such a minute.
    /// </summary>
    private bool? ReadInLastMinute(VitalReading reading)
    {
        if (_readInLastMinute is null || !_readInLastMinute.TryGetValue(reading.Kind, out var times)
            || Find(reading.Kind) is not { } windows || Resolution.Minute.WindowStart(reading.TimestampMs) != windows.RebuiltLastMinuteMs)
        {
            return null;
        }

        return times.Remove(reading.TimestampMs);
    }

    /// <summary>Forgets the times read of a vital's last minute once that minute has closed: a reading of it then is a late one.</summary>
    private void ForgetClosedLastMinutes()
    {
        foreach (var kind in _readInLastMinute!.Keys)
        {
            if (Find(kind) is not { } windows || windows.Open(Resolution.Minute)?.StartMs != windows.RebuiltLastMinuteMs)
            {
                _readInLastMinute.Remove(kind);
            }
        }

        if (_readInLastMinute.Count == 0)
        {
            _readInLastMinute = null;
        }
    }

    public override async Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        // Checkpoint the open windows, so trends stay complete while the patient is inactive. A later activation
        // rebuilds them from the raw store and replaces these.
        foreach (var windows in _vitals)
        {
            foreach (var resolution in ResolutionExtensions.All)
            {
                if (windows.Open(resolution) is { } open)
                {
                    Close(windows.Kind, resolution, open);
                }
            }
        }

        // The alert state is emptied of events handed on whether or not the windows could be written (a series store
        // away at shutdown): otherwise the next activation hands them on again, as only a crash should.
        try
        {
            await FlushClosedAsync(cancellationToken);
            if (_holdsOpenWindows)
            {
                _holdsOpenWindows = false;
                instruments.OpenWindowsWritten();
            }
        }
        finally
        {
            await WriteLastAlertStateAsync();
            instruments.PatientDeactivated();
        }
    }

    /// <summary>
    /// As the grain deactivates: writes the alert state without the events it was last written with, once they have all
    /// been handed on, so the next activation does not hand them on again (only a crash leaves them there, and then they
    /// go again, at the positions they were stored at, as they may not have gone at all); and with how far the rules
    /// judged, so that a sustain or recovery under way carries on in the next activation rather than starting over.
    /// </summary>
    private async Task WriteLastAlertStateAsync()
    {
        // Only a sustain under way is worth a write of its own (at a shutdown every patient deactivates): the next
        // activation judges again the readings of the last 15 minutes after the last write, and takes those before as
        // the latest values the rules had (RestoreJudged).
        var carriesSustain = _judgedSinceWritten && _alerts.HasSustainUnderWay;
        if ((!_writtenOutboxHandedOn && !carriesSustain) || alertState.State.Outbox.Count > 0)
        {
            return;
        }

        try
        {
            await CommitAlertsAsync(writeState: true, force: true);
        }
        catch (Exception exception)
        {
            LogLastAlertStateUnwritten(logger, exception, PatientId);
        }
    }

    public async ValueTask<Immutable<CommittedMinute[]>> ApplyAsync(PatientReadings readings)
    {
        // A commit the activation already read from the raw store is counted once. Readings from before the rebuilt
        // range are not in the grain's windows at all: the windows they fall in are recomputed from the raw store.
        var rebuilt = readings.CommitId <= _rebuiltThroughCommit;
        _applied.Add(readings.CommitId);
        HashSet<(VitalKind Kind, long MinuteStartMs)>? partlyRead = null;
        var intoEndedDay = false;
        foreach (var reading in readings.All)
        {
            if (reading.TimestampMs < _rebuiltFromMs)
            {
                (_late ??= []).Add((reading.Kind, Resolution.Minute.WindowStart(reading.TimestampMs)));
                NoteLate(reading);
                continue;
            }

            if (ReadInLastMinute(reading) is { } alreadyIn)
            {
                // The vital's last minute as the rebuild read it, still open: the reading is in it, or goes in now.
                if (alreadyIn)
                {
                    // Known by its time only: another device's reading at the same time would be taken for it, so the
                    // minute is still settled from the store once it closes.
                    (_unsettled ??= []).Add((reading.Kind, Resolution.Minute.WindowStart(reading.TimestampMs)));
                    continue;
                }
            }
            else if (rebuilt)
            {
                if (rawStore.ReadableAfter == TimeSpan.Zero)
                {
                    // The rebuild read all of this commit.
                    continue;
                }

                // The rebuild may have read part of this commit (a series server shows a commit a piece at a time).
                // Past the last minute it read of the vital, it read none of it: those readings go in as new ones.
                var minute = Resolution.Minute.WindowStart(reading.TimestampMs);
                var known = Find(reading.Kind);
                if (known is not null && minute <= known.RebuiltLastMinuteMs)
                {
                    // Up to it, which part it read is not known: the windows over the minute are taken from the store
                    // as they close, those already closed (which close no more) now, as a late reading's are, and all
                    // of them again once the store shows the whole commit.
                    (_unsettled ??= []).Add((reading.Kind, minute));
                    (partlyRead ??= []).Add((reading.Kind, minute));
                    if (known.Open(Resolution.Minute) is not { } open || minute < open.StartMs)
                    {
                        (_late ??= []).Add((reading.Kind, minute));
                    }

                    continue;
                }
            }

            var windows = Find(reading.Kind) ?? AddVital(reading.Kind);
            if (!windows.Add(reading.TimestampMs, reading.Value, this))
            {
                (_late ??= []).Add((reading.Kind, Resolution.Minute.WindowStart(reading.TimestampMs)));
            }

            // Into the open windows of a day already ended (a vital whose latest reading is from then; a late reading
            // goes into its open hour or day too): a crash before that day's windows close would lose it, and the next
            // activation may not rebuild that day.
            intoEndedDay |= reading.TimestampMs < _checkpointedBeforeMs;
        }

        if (rawStore.ReadableAfter > TimeSpan.Zero)
        {
            NoteAppliedLately(readings);
        }

        if (_readInLastMinute is not null)
        {
            ForgetClosedLastMinutes();
        }

        var now = NowMs;
        var outboxBefore = alertState.State.Outbox.Count;

        // Implausible readings first: a sensor still sending them keeps its technical alert open, rather than a plausible
        // reading of the same batch clearing it and the re-arm guard then holding the next episode back.
        if (readings.Implausible is { } implausible)
        {
            foreach (var reading in implausible)
            {
                _alerts.ObserveImplausible(reading, now);
            }
        }

        if (!_alerts.HasRules || InTimeOrder(readings, acrossVitals: _alerts.JudgesAcrossVitals))
        {
            foreach (var reading in readings.All)
            {
                _alerts.Observe(reading, now);
            }
        }
        else
        {
            // The rules judge each vital in reading time and pass over a reading older than one of it they judged: a
            // batch sent newest first, or two devices' batches in one flush, are judged in time order rather than losing
            // all but a few. An early-warning score is judged on every vital at each moment: a batch of a minute's heart
            // rates followed by the same minute's SpO2 is judged in time order across them, or each heart rate would be
            // scored with the SpO2 from before the batch.
            using var ordered = readings.All.ToTimeOrder();
            for (var i = 0; i < ordered.Count; i++)
            {
                _alerts.Observe(ordered[i], now);
            }
        }

        // Then those past the range on a threshold's alarm side, in time order: they carry on a sustain under way, and
        // must not be judged before a plausible reading stamped earlier.
        if (readings.Implausible is { } beyondRange && _alerts.HasRules)
        {
            foreach (var reading in beyondRange.Length == 1 ? beyondRange : [.. beyondRange.OrderBy(r => r.TimestampMs)])
            {
                _alerts.ObserveImplausibleBeyondRange(reading, now);
            }
        }

        _alerts.EndOfReadings(now);

        // A store that shows a commit a moment after answering it may not show these readings yet: the windows
        // recomputed now are recomputed again once it does.
        var unsettled = rawStore.ReadableAfter == TimeSpan.Zero || (_late is null && partlyRead is null)
            ? null
            : (_late ?? []).Union(partlyRead ?? []).ToHashSet();
        try
        {
            // Alerts first: they are what someone is waiting for.
            _judgedSinceWritten |= _alerts.HasRules;
            var checkpoint = now - _alertStateWrittenMs >= SustainCheckpointMs && _alerts.HasSustainUnderWay;
            await CommitAlertsAsync(writeState: true, force: checkpoint, judged: (alertState.State.Outbox.Count - outboxBefore, readings.HandedOverAt));
            ScheduleAlertTimer();
            await CheckpointEndedDaysAsync(now);
            if (intoEndedDay)
            {
                await CheckpointOpenWindowsAsync(endingBy: _checkpointedBeforeMs, CancellationToken.None);
            }

            await RecomputeLateAndFlushAsync();
            if (_resettle is not null)
            {
                (unsettled ??= []).UnionWith(_resettle);
                _resettle = null;
            }

            return new(unsettled is null
                ? []
                : [.. unsettled.Select(minute => new CommittedMinute(minute.Kind, minute.MinuteStartMs, readings.CommitId, readings.CommitId))]);
        }
        catch (Exception exception)
        {
            StartOver(exception);
            throw;
        }
    }

    public async Task<CommittedMinute[]> SettleAsync(CommittedMinute[] minutes)
    {
        foreach (var minute in minutes)
        {
            (_late ??= []).Add((minute.Kind, minute.MinuteStartMs));
        }

        try
        {
            // Settling reads the store long enough after the commits for it to show them whole: what closes here needs
            // no settling again. But a minute recomputed may also hold a commit this grain applied a moment ago, which the
            // store answered and may not show yet (a settle after a rebuild, while readings flow): the store shows every
            // write it answered first where it can (VictoriaMetrics); where it cannot (InfluxDB), such minutes are handed
            // back to be settled again once it does.
            await rawStore.ShowAnsweredWritesAsync(CancellationToken.None);
            var shownBefore = NowMs - (long)rawStore.ReadableAfter.TotalMilliseconds;
            HashSet<(VitalKind Kind, long MinuteStartMs)>? settling = _appliedLately is null ? null : [.. _late ?? []];
            if (_late is not null)
            {
                await RecomputeLateAsync(_late);
            }

            // Every window written now was read from the store: those recomputed, and those over unsettled minutes.
            HashSet<(VitalKind Kind, Resolution Resolution, long StartMs)>? recomputed = settling is null
                ? null
                : [.. _closed.Select(rollup => (rollup.Kind, rollup.Resolution, rollup.Window.StartMs))];
            await FlushClosedAsync(CancellationToken.None);
            if (settling is not null && _resettle is not null)
            {
                settling.UnionWith(_resettle);
            }

            _resettle = null;
            return settling is null ? [] : AppliedLately(settling, recomputed!, shownBefore);
        }
        catch (Exception exception)
        {
            StartOver(exception);
            throw;
        }
    }

    public async Task<CommittedMinute[]> SettleRebuiltAsync(CommittedMinute[] minutes)
    {
        var today = Resolution.Day.WindowStart(NowMs);
        foreach (var minute in minutes)
        {
            // Closed windows over the minute are recomputed now, as a late reading's are; those still open (or yet to
            // open, when the rebuild read nothing of the minute) are taken from the store as they close. Only a minute
            // of a day still open waits that way: it is settled once its day closes.
            var key = (minute.Kind, minute.MinuteStartMs);
            (_late ??= []).Add(key);
            var openDay = Find(minute.Kind)?.Open(Resolution.Day) is { } day ? day.StartMs : today;
            if (Resolution.Day.WindowStart(minute.MinuteStartMs) >= openDay)
            {
                (_unsettled ??= []).Add(key);
            }
        }

        return await SettleAsync([]);
    }

    public async Task<bool> RecomputeAsync(CommittedMinute[] minutes)
    {
        // A minute within the rebuilt days holds readings this activation has if their commits are ones it read or was
        // handed (known only when the minute holds one commit); otherwise it may lack them (a call failed, or never
        // arrived) and rebuilds, as a new activation would. A minute from before the rebuilt days (those of a rebuild
        // just made included) is recomputed from the raw store, as a late reading's is.
        var missed = minutes.Any(minute => minute.MinuteStartMs >= _rebuiltFromMs && minute.LastCommitId > _rebuiltThroughCommit
            && (minute.FirstCommitId != minute.LastCommitId || !_applied.Contains(minute.LastCommitId)));
        try
        {
            if (missed)
            {
                await RebuildAsync(CancellationToken.None);
            }

            foreach (var minute in minutes)
            {
                if (minute.MinuteStartMs < _rebuiltFromMs)
                {
                    (_late ??= []).Add((minute.Kind, minute.MinuteStartMs));
                }
            }

            await RecomputeLateAndFlushAsync();
            await JudgeUnjudgedAsync(CancellationToken.None);
            await CommitAlertsAsync(writeState: true);
            ScheduleAlertTimer();
            return missed;
        }
        catch (Exception exception)
        {
            StartOver(exception);
            throw;
        }
    }

    /// <summary>
    /// Has the alert rules judge, in time order across vitals, the readings still news (the last 15 minutes) that come
    /// after what they had judged when the alert state was last written: those a crash, or a call that failed or never
    /// arrived, kept from them (their batches acked all the same). Readings judged before without raising or clearing
    /// anything may be judged again, which rebuilds what the rules remember of them (a sustained condition, a rate).
    /// Before them, the rate-of-change rules' windows are filled with the readings they had judged (still news), so a
    /// rate under way is seen from the next reading on, not once a third of its window has come in again.
    /// </summary>
    private async Task JudgeUnjudgedAsync(CancellationToken cancellationToken)
    {
        if (!_alerts.HasRules || _vitals.Length == 0)
        {
            return;
        }

        var now = NowMs;
        var stale = now - AlertEngine.StaleAfterMs;
        var from = long.MaxValue;
        foreach (var windows in _vitals)
        {
            var judged = _alerts.JudgedThroughMs(windows.Kind);
            from = Math.Min(from, judged == long.MinValue ? stale : Math.Max(stale, judged + 1 - _alerts.RateWindowMs(windows.Kind)));

            // A spot check's sustain under way: the readings since it (an hour and what is news at most), as one come since
            // and lost with a crash before its call may break it.
            if (_alerts.AloneSinceMs(windows.Kind) is { } aloneSince)
            {
                from = Math.Min(from, Math.Max(aloneSince + 1, stale - AloneLookbackMs));
            }
        }

        var kinds = _vitals.Select(windows => windows.Kind).ToArray();
        try
        {
            await foreach (var stored in rawStore.StreamAsync(PatientId, kinds, from, now + Resolution.Day.Milliseconds(), cancellationToken))
            {
                var reading = new VitalReading(stored.Kind, stored.TimestampMs, stored.Value);
                if (reading.TimestampMs <= _alerts.JudgedThroughMs(reading.Kind))
                {
                    _alerts.Warm(reading, now);
                    _alerts.ObserveJudgedBefore(reading);
                }
                else
                {
                    _alerts.Observe(reading, now, seenAtMs: reading.TimestampMs);
                }
            }
        }
        finally
        {
            // Also when the store's stream fails part way: what it gave is judged whole, nothing left due.
            _alerts.EndOfReadings(now);
        }
    }

    /// <summary>Recomputes the windows late readings fell into, if any, and writes every window closed.</summary>
    private async Task RecomputeLateAndFlushAsync()
    {
        if (_late is not null)
        {
            await RecomputeLateAsync(_late);
        }

        await FlushClosedAsync(CancellationToken.None);
    }

    /// <summary>
    /// As readings and the alert timer do: a grain kept active by reads alone (a dashboard open on a patient whose
    /// device stopped, with no alert clock running) writes what a day left open once it ends, which a crash days later
    /// would take otherwise. Not in the read itself, which interleaves with the grain's other calls, but in a turn of
    /// its own, at once; one that fails is tried at the next read, reading or tick.
    /// </summary>
    private void CheckpointEndedDaysSoon()
    {
        if (_dayCheckpoint is not null || Resolution.Day.WindowStart(NowMs) <= _checkpointedBeforeMs)
        {
            return;
        }

        _dayCheckpoint = this.RegisterGrainTimer(
            static (grain, _) => grain.OnDayCheckpointAsync(),
            this,
            new GrainTimerCreationOptions(TimeSpan.Zero, Timeout.InfiniteTimeSpan));
    }

    private async Task OnDayCheckpointAsync()
    {
        try
        {
            await CheckpointEndedDaysAsync(NowMs);
        }
        catch (Exception exception) when (exception is not OperationCanceledException)
        {
            LogEndedDayNotWritten(logger, exception, PatientId);
        }
        finally
        {
            _dayCheckpoint?.Dispose();
            _dayCheckpoint = null;
        }
    }

    /// <summary>Once a day has ended, writes the windows still open from before it (a vital that stopped, say).</summary>
    private async Task CheckpointEndedDaysAsync(long nowMs)
    {
        var today = Resolution.Day.WindowStart(nowMs);
        if (today > _checkpointedBeforeMs)
        {
            await CheckpointOpenWindowsAsync(endingBy: today, CancellationToken.None);
            _checkpointedBeforeMs = today;
        }
    }

    /// <summary>
    /// Writes (without closing) every open window that ends by <paramref name="endingBy"/>, unless its vital's open day
    /// is as last written. Straight to the store: these are not closed windows, whose minutes settle (see
    /// <see cref="SettleClosedAsync"/>).
    /// </summary>
    private async Task CheckpointOpenWindowsAsync(long endingBy, CancellationToken cancellationToken)
    {
        var checkpoints = new List<Rollup>();
        List<(VitalKind Kind, RollupWindow Day)>? days = null;
        foreach (var windows in _vitals)
        {
            if (windows.Open(Resolution.Day) is not { } day || day.StartMs + Resolution.Day.Milliseconds() > endingBy
                || (_checkpointedDays?.TryGetValue(windows.Kind, out var written) is true && written == day))
            {
                continue;
            }

            foreach (var resolution in ResolutionExtensions.All)
            {
                if (windows.Open(resolution) is { Count: > 0 } open)
                {
                    checkpoints.Add(new Rollup(PatientId, windows.Kind, resolution, open));
                }
            }

            (days ??= []).Add((windows.Kind, day));
        }

        if (checkpoints.Count > 0)
        {
            await rollupStore.WriteAsync(checkpoints, cancellationToken);
        }

        // Marked once written: a write that failed is made again by the next checkpoint.
        foreach (var (kind, day) in days ?? [])
        {
            (_checkpointedDays ??= [])[kind] = day;
        }
    }

    /// <summary>
    /// Windows not recomputed or rollups not written would be lost with this activation's memory: start over from the
    /// raw store instead.
    /// </summary>
    private void StartOver(Exception exception)
    {
        LogApplyFailed(logger, exception, PatientId);
        _late = null;
        _closed.Clear();
        DeactivateOnIdle();
        ComeBackWhenPossible();
    }

    /// <summary>
    /// After this activation gave itself up (a failed apply, a state write refused): a patient with alert rules is woken
    /// again, 5 s on and then up to a minute apart, until an activation answers (for a day at most), as nothing else
    /// may call it back while its device is silent: its no-data alert, escalations and snoozes run on its timers, and
    /// the ingest's repair of the failed call gives up after 20 minutes. Without rules, the next reading brings it back.
    /// </summary>
    private void ComeBackWhenPossible()
    {
        if (!_alerts.HasRules)
        {
            return;
        }

        var self = this.AsReference<IPatientGrain>();
        var (patientId, log, clock) = (PatientId, logger, timeProvider);
        _ = Task.Run(async () =>
        {
            for (var attempt = 1; attempt <= MaxWakeAttempts; attempt++)
            {
                // Spread by a quarter either way: grains that gave up together (a store away) do not all rebuild at once.
                await Task.Delay(TimeSpan.FromSeconds(Math.Min(60, 5 * attempt) * (0.75 + (Random.Shared.NextDouble() / 2))), clock);
                try
                {
                    await self.WakeAsync();
                    return;
                }
                catch (Exception exception)
                {
                    if (attempt % 10 == 0)
                    {
                        LogWakeFailed(log, exception, patientId, attempt);
                    }
                }
            }
        });
    }

    public async Task<LiveSnapshot> GetLiveAsync()
    {
        CheckpointEndedDaysSoon();
        // The grain holds yesterday's and today's readings; a vital last seen before them is still the patient's latest.
        // A read begun before a rebuild moved those days on is read again: its days and the new windows would miss any
        // vital seen between the two starts.
        LiveVital[] earlier;
        int rebuilds;
        do
        {
            rebuilds = _rebuilds;
            var read = _earlier ??= ReadEarlierAsync();
            try
            {
                earlier = _earlierRead = await read;
            }
            catch (Exception exception)
            {
                // Read again at the next view. Meanwhile the last read's answer stands (a view that dropped them would
                // tell a live stream they were gone); with none yet, the view fails, as a grain that cannot answer does
                // (a stream skips it and tries again).
                if (ReferenceEquals(_earlier, read))
                {
                    _earlier = null;
                }

                if (_earlierRead is null)
                {
                    throw;
                }

                LogEarlierUnread(logger, exception, PatientId);
                earlier = _earlierRead;
            }
        }
        while (rebuilds != _rebuilds);

        var vitals = _vitals
            .Where(windows => windows.LatestMs != long.MinValue)
            .Select(windows => new LiveVital(windows.Kind, windows.LatestValue, windows.LatestMs, windows.Minute));
        if (earlier.Length == 0 && _lateLatest is null)
        {
            return new LiveSnapshot(PatientId, [.. vitals.OrderBy(vital => vital.Kind)]);
        }

        var older = new Dictionary<VitalKind, LiveVital>();
        foreach (var vital in earlier)
        {
            older[vital.Kind] = vital;
        }

        foreach (var (kind, reading) in _lateLatest ?? [])
        {
            if (!older.TryGetValue(kind, out var found) || found.TimestampMs < reading.TimestampMs)
            {
                var minuteStartMs = Resolution.Minute.WindowStart(reading.TimestampMs);
                older[kind] = new LiveVital(kind, reading.Value, reading.TimestampMs, RollupWindow.Of(minuteStartMs, reading.TimestampMs, reading.Value));
            }
        }

        return new LiveSnapshot(PatientId, [.. vitals
            .Concat(older.Values.Where(vital => Find(vital.Kind) is not { LatestMs: not long.MinValue }))
            .OrderBy(vital => vital.Kind)]);
    }

    /// <summary>Keeps a reading from before the rebuilt days as its vital's latest of them, if it is.</summary>
    private void NoteLate(VitalReading reading)
    {
        _lateLatest ??= [];
        if (!_lateLatest.TryGetValue(reading.Kind, out var latest) || latest.TimestampMs < reading.TimestampMs)
        {
            _lateLatest[reading.Kind] = reading;
        }
    }

    /// <summary>
    /// Each vital not in the grain's windows as last seen within <see cref="EarlierLookback"/> before the days the
    /// activation rebuilt: its latest day window's last reading, with that reading's minute window (a window of the one
    /// reading where the minute rollups no longer keep it).
    /// </summary>
    private async Task<LiveVital[]> ReadEarlierAsync()
    {
        var toMs = _rebuiltFromMs;
        if (toMs == long.MaxValue)
        {
            return [];
        }

        var kinds = Enum.GetValues<VitalKind>().Where(kind => Find(kind) is not { LatestMs: not long.MinValue }).ToArray();
        var days = await Task.WhenAll(kinds.Select(kind =>
            rollupStore.QueryAsync(PatientId, kind, Resolution.Day, toMs - (long)EarlierLookback.TotalMilliseconds, toMs)));
        var earlier = new List<LiveVital>();
        for (var i = 0; i < kinds.Length; i++)
        {
            if (days[i].Count == 0 || days[i][^1] is not { Count: > 0 } day)
            {
                continue;
            }

            var minuteStartMs = Resolution.Minute.WindowStart(day.LastMs);
            var minutes = await rollupStore.QueryAsync(PatientId, kinds[i], Resolution.Minute, minuteStartMs, minuteStartMs + 1);
            var minute = minutes.Count > 0 && minutes[0].LastMs == day.LastMs ? minutes[0] : RollupWindow.Of(minuteStartMs, day.LastMs, day.Last);
            earlier.Add(new LiveVital(kinds[i], day.Last, day.LastMs, minute));
        }

        return [.. earlier];
    }

    public Task<RollupWindow[]> GetRecentWindowsAsync(VitalKind kind, Resolution resolution)
    {
        CheckpointEndedDaysSoon();
        var recent = new List<RollupWindow>();
        if (_written is not null)
        {
            var shownBefore = NowMs - (long)rawStore.ReadableAfter.TotalMilliseconds;
            recent.AddRange(_written
                .Where(written => written.WrittenMs > shownBefore && written.Rollup.Kind == kind && written.Rollup.Resolution == resolution)
                .Select(written => written.Rollup.Window));
        }

        recent.AddRange(_closed.Where(rollup => rollup.Kind == kind && rollup.Resolution == resolution).Select(rollup => rollup.Window));
        if (Find(kind)?.Open(resolution) is { } open)
        {
            recent.Add(open);
        }

        return Task.FromResult(recent.OrderBy(window => window.StartMs).ToArray());
    }

    public Task<RollupWindow?> GetOpenWindowAsync(VitalKind kind, Resolution resolution) =>
        Task.FromResult(Find(kind)?.Open(resolution));

    public Task<AlertRuleSet> GetAlertRulesAsync() => Task.FromResult(alertState.State.Rules);

    public async Task<AlertRuleSet> SetAlertRulesAsync(AlertRuleSet rules)
    {
        // Watched before rules are written, unwatched after they are gone: a crash in between leaves at worst a patient
        // woken at start with no rules, never one with rules whose clock (no data, escalation) no start wakes.
        var watched = rules.Rules.Length > 0;
        if (watched)
        {
            await alertStore.SetWatchedAsync(PatientId, true);
        }

        _alerts.SetRules(rules, NowMs);
        await CommitAlertsAsync(writeState: true, force: true);
        if (!watched)
        {
            await alertStore.SetWatchedAsync(PatientId, false);
        }

        ScheduleAlertTimer();
        LogRulesChanged(logger, PatientId, rules.Rules.Length, rules.Template);
        return alertState.State.Rules;
    }

    public Task<Alert[]> GetOpenAlertsAsync() => Task.FromResult(alertState.State.Open.ToArray());

    public async Task<Alert?> AcknowledgeAsync(string alertId, string by)
    {
        var alert = _alerts.Acknowledge(alertId, by, NowMs);
        await CommitAlertsAsync(writeState: true);
        ScheduleAlertTimer();
        return alert;
    }

    public async Task<SnoozeResult> SnoozeAsync(string alertId, TimeSpan duration, string by)
    {
        if (_alerts.FindOpenAlert(alertId) is { } open && duration > AlertSnooze.Longest(open.Priority))
        {
            return new SnoozeResult(null, open.Priority);
        }

        var now = NowMs;
        var alert = _alerts.Snooze(alertId, now + (long)duration.TotalMilliseconds, by, now);
        await CommitAlertsAsync(writeState: true);
        ScheduleAlertTimer();
        return new SnoozeResult(alert);
    }

    public Task WakeAsync() => Task.CompletedTask;

    /// <summary>
    /// Whether each vital's readings come in time order, as one device sending in order sends them (a batch holds its
    /// vitals one after another: all its heart rates, then all its SpO2), or, <paramref name="acrossVitals"/>, whether
    /// all of them do: one pass, nothing allocated.
    /// </summary>
    private static bool InTimeOrder(PatientReadings readings, bool acrossVitals)
    {
        Span<long> last = stackalloc long[16];
        last.Fill(long.MinValue);
        foreach (var reading in readings.All)
        {
            var slot = acrossVitals ? 0 : (byte)reading.Kind;
            if (slot >= last.Length)
            {
                return false;
            }

            ref var latest = ref last[slot];
            if (reading.TimestampMs < latest)
            {
                return false;
            }

            latest = reading.TimestampMs;
        }

        return true;
    }

    /// <summary>
    /// Persists the alert state with its new events, then stores the events and hands them on. If storing fails, the
    /// events stay in the persisted outbox and go with the next change (or the next activation). The DuckDB grain
    /// storage stores the events in the state's own transaction, and the append finds them stored.
    /// </summary>
    /// <param name="judged">How many of the outbox's events the readings of this call made, and when those readings were handed to the ingest pipeline: timed as they are handed off.</param>
    private async Task CommitAlertsAsync(bool writeState, bool force = false, (int Events, DateTimeOffset? HandedOverAt) judged = default)
    {
        var outbox = alertState.State.Outbox;

        // A spot check's sustain begun, or one written broken, is written at once (see AlertEngine.AloneChangedSinceRecorded).
        if (outbox.Count == 0 && !force && !(writeState && _alerts.AloneChangedSinceRecorded))
        {
            return;
        }

        if (writeState)
        {
            _alerts.RecordJudged();
            await alertState.WriteStateAsync();
            _writtenOutboxHandedOn = false;
            _judgedSinceWritten = false;
            _alertStateWrittenMs = NowMs;
        }

        if (outbox.Count == 0)
        {
            return;
        }

        var stored = await alertStore.AppendAsync(outbox.ToArray());
        outbox.Clear();
        _writtenOutboxHandedOn = true;
        instruments.AlertEventsStored(stored);
        if (judged is { Events: > 0, HandedOverAt: { } handedOverAt })
        {
            instruments.AlertEventsHandedOff(stored.Skip(Math.Max(0, stored.Count - judged.Events)), timeProvider.GetUtcNow() - handedOverAt);
        }

        alertPublisher.Publish(stored);
    }

    private void ScheduleAlertTimer()
    {
        if (_alerts.NextDueMs is not { } due)
        {
            _alertTimer?.Dispose();
            _alertTimer = null;
            return;
        }

        var delay = TimeSpan.FromMilliseconds(Math.Clamp(due - NowMs, 0, (long)MaxTimerDelay.TotalMilliseconds));
        SetAlertTimer(delay);
    }

    private void SetAlertTimer(TimeSpan delay)
    {
        if (_alertTimer is null)
        {
            _alertTimer = this.RegisterGrainTimer(
                static (grain, _) => grain.OnAlertTimerAsync(),
                this,
                new GrainTimerCreationOptions(delay, Timeout.InfiniteTimeSpan) { KeepAlive = true });
        }
        else
        {
            _alertTimer.Change(delay, Timeout.InfiniteTimeSpan);
        }
    }

    private async Task OnAlertTimerAsync()
    {
        try
        {
            var now = NowMs;
            _alerts.Tick(now);
            await CommitAlertsAsync(writeState: true);
            ScheduleAlertTimer();

            // The timer keeps the grain active without readings: what a day left open is written once it ends.
            await CheckpointEndedDaysAsync(now);
        }
        catch (Orleans.Storage.InconsistentStateException exception)
        {
            // The stored state is not the one this activation last wrote (a write that timed out here but was made):
            // every write from this activation would be refused the same way. It makes way for a new one, which reads
            // the state as stored, hands on its events and runs the clocks again; woken at once, as no reading may come.
            LogAlertTimerFailed(logger, exception, PatientId);
            DeactivateOnIdle();
            ComeBackWhenPossible();
        }
        catch (Exception exception)
        {
            // The events are in memory (and, if the state was written, in the outbox): try again shortly.
            LogAlertTimerFailed(logger, exception, PatientId);
            SetAlertTimer(TimerRetryDelay);
        }
    }

    // The grain takes its vitals' closed windows itself: folding a reading allocates nothing, and no delegate is kept.
    void IClosedWindows.Add(VitalKind kind, Resolution resolution, RollupWindow window) => Close(kind, resolution, window);

    private void Close(VitalKind kind, Resolution resolution, RollupWindow window)
    {
        if (window.Count > 0)
        {
            _closed.Add(new Rollup(PatientId, kind, resolution, window));
        }
    }

    /// <summary>
    /// Recomputes, from the raw store, every closed window that late readings fell into: per resolution, one query per
    /// stretch of those windows (at most <see cref="MaxLateStretches"/>), so that late readings days apart (a weight a day
    /// from a phone back online after a month) read those days, not every minute of the month between.
    /// </summary>
    private async Task RecomputeLateAsync(HashSet<(VitalKind Kind, long MinuteStartMs)> late)
    {
        var touched = new HashSet<(VitalKind Kind, Resolution Resolution, long StartMs)>();
        foreach (var (kind, minuteStart) in late)
        {
            var open = Find(kind);
            foreach (var resolution in ResolutionExtensions.All)
            {
                var start = resolution.WindowStart(minuteStart);
                if (open?.Open(resolution) is not { } current || current.StartMs != start)
                {
                    touched.Add((kind, resolution, start));
                }
            }
        }

        foreach (var group in touched.GroupBy(window => window.Resolution))
        {
            var resolution = group.Key;
            var starts = group.Select(window => window.StartMs).Distinct().Order().ToArray();
            var minGapMs = Math.Max(LateStretchGapMs, 2 * resolution.Milliseconds());
            foreach (var (first, last) in TimeStretches.Of(starts, minGapMs, MaxLateStretches))
            {
                var recomputed = await rawStore.AggregateAsync(PatientId, first, last + resolution.Milliseconds(), resolution);
                foreach (var window in recomputed.Windows)
                {
                    if (touched.Contains((window.Kind, resolution, window.Window.StartMs)))
                    {
                        Close(window.Kind, resolution, window.Window);
                        if (resolution == Resolution.Minute && window.Window.Count > 0 && window.Window.LastMs < _rebuiltFromMs)
                        {
                            // A repair's late minute as well as a call's: the live view's latest of the days before.
                            NoteLate(new VitalReading(window.Kind, window.Window.LastMs, window.Window.Last));
                        }
                    }
                }
            }
        }

        _late = null;
    }

    private async Task FlushClosedAsync(CancellationToken cancellationToken)
    {
        if (_closed.Count == 0)
        {
            return;
        }

        if (_unsettled is not null)
        {
            await SettleClosedAsync(_unsettled, cancellationToken);
        }

        await rollupStore.WriteAsync(_closed.ToArray(), cancellationToken);
        KeepWrittenUntilShown();

        // Windows close about once a minute; between times the grain, kept for every active patient, holds no array for them.
        _closed.Clear();
        _closed.Capacity = 0;
    }

    /// <summary>
    /// With a store that shows a write a while after answering it, keeps the closed windows just written for trend reads
    /// until it shows them (<see cref="IRawSeriesStore.ReadableAfter"/>), forgetting those it shows by now.
    /// </summary>
    private void KeepWrittenUntilShown()
    {
        if (rawStore.ReadableAfter <= TimeSpan.Zero)
        {
            return;
        }

        // A window written again (recomputed) replaces the one written before.
        var now = NowMs;
        var shownBefore = now - (long)rawStore.ReadableAfter.TotalMilliseconds;
        _written?.RemoveAll(written => written.WrittenMs <= shownBefore || _closed.Any(rollup =>
            rollup.Kind == written.Rollup.Kind && rollup.Resolution == written.Rollup.Resolution && rollup.Window.StartMs == written.Rollup.Window.StartMs));
        (_written ??= []).AddRange(_closed.Select(rollup => (rollup, now)));
    }

    /// <summary>
    /// Replaces each closed window over an unsettled minute with the store's own (one query per resolution). The store
    /// may not show the latest readings in it yet: those minutes are settled again (see <see cref="_resettle"/>).
    /// </summary>
    private async Task SettleClosedAsync(HashSet<(VitalKind Kind, long MinuteStartMs)> unsettled, CancellationToken cancellationToken)
    {
        var settle = new List<int>();
        for (var i = 0; i < _closed.Count; i++)
        {
            var rollup = _closed[i];
            var over = false;
            foreach (var minute in unsettled)
            {
                if (minute.Kind == rollup.Kind && rollup.Resolution.WindowStart(minute.MinuteStartMs) == rollup.Window.StartMs)
                {
                    over = true;
                    (_resettle ??= []).Add(minute);
                }
            }

            if (over)
            {
                settle.Add(i);
            }
        }

        foreach (var group in settle.GroupBy(i => _closed[i].Resolution))
        {
            var resolution = group.Key;
            var from = group.Min(i => _closed[i].Window.StartMs);
            var to = group.Max(i => _closed[i].Window.StartMs) + resolution.Milliseconds();
            var stored = (await rawStore.AggregateAsync(PatientId, from, to, resolution, cancellationToken)).Windows
                .ToDictionary(window => (window.Kind, window.Window.StartMs), window => window.Window);
            foreach (var i in group)
            {
                var rollup = _closed[i];
                if (stored.TryGetValue((rollup.Kind, rollup.Window.StartMs), out var window))
                {
                    _closed[i] = rollup with { Window = window };
                }
            }
        }

        // A minute is settled once its last window (the day's) has closed.
        unsettled.RemoveWhere(minute => settle.Any(i => _closed[i].Kind == minute.Kind && _closed[i].Resolution == Resolution.Day
            && Resolution.Day.WindowStart(minute.MinuteStartMs) == _closed[i].Window.StartMs));
        if (unsettled.Count == 0)
        {
            _unsettled = null;
        }
    }

    /// <summary>
    /// Notes the spans of time a commit applied now holds readings of each vital in (see <see cref="_appliedLately"/>),
    /// forgetting those noted longer ago than the store takes to show a commit. Late readings are left out: their
    /// minutes are settled anyway (the call answers with them, see <see cref="_late"/>), after any settle now.
    /// </summary>
    private void NoteAppliedLately(PatientReadings readings)
    {
        var now = NowMs;
        var shownBefore = now - (long)rawStore.ReadableAfter.TotalMilliseconds;
        _appliedLately?.RemoveAll(span => span.AppliedMs <= shownBefore);

        // A commit's readings come batch by batch, each vital's in time order as a rule: a span ends where the vital
        // changes, or where a reading lies more than a minute from it (another device's batch, a backfill).
        VitalKind? kind = null;
        long fromMs = 0, toMs = 0;
        foreach (var reading in readings.All)
        {
            var minute = Resolution.Minute.WindowStart(reading.TimestampMs);
            if (_late?.Contains((reading.Kind, minute)) is true)
            {
                continue;
            }

            if (reading.Kind != kind
                || minute < Resolution.Minute.WindowStart(fromMs) - Resolution.Minute.Milliseconds()
                || minute > Resolution.Minute.WindowStart(toMs) + Resolution.Minute.Milliseconds())
            {
                if (kind is { } noted)
                {
                    NoteSpan(new AppliedSpan(noted, fromMs, toMs, now, readings.CommitId, readings.CommitId));
                }

                (kind, fromMs, toMs) = (reading.Kind, reading.TimestampMs, reading.TimestampMs);
                continue;
            }

            fromMs = Math.Min(fromMs, reading.TimestampMs);
            toMs = Math.Max(toMs, reading.TimestampMs);
        }

        if (kind is { } last)
        {
            NoteSpan(new AppliedSpan(last, fromMs, toMs, now, readings.CommitId, readings.CommitId));
        }

        if (_appliedLately?.Count == 0)
        {
            _appliedLately = null;
        }
    }

    /// <summary>
    /// Adds a span, or, for a vital streaming into one minute, extends the span of that minute to the commit, so that a
    /// minute stops being noted once the time the store takes to show its last commit has passed.
    /// </summary>
    private void NoteSpan(AppliedSpan span)
    {
        var spans = _appliedLately ??= [];
        var minute = Resolution.Minute.WindowStart(span.FromMs);
        if (Resolution.Minute.WindowStart(span.ToMs) == minute)
        {
            for (var i = 0; i < spans.Count; i++)
            {
                var other = spans[i];
                if (other.Kind == span.Kind && Resolution.Minute.WindowStart(other.FromMs) == minute && Resolution.Minute.WindowStart(other.ToMs) == minute)
                {
                    spans[i] = other with
                    {
                        FromMs = Math.Min(other.FromMs, span.FromMs),
                        ToMs = Math.Max(other.ToMs, span.ToMs),
                        AppliedMs = span.AppliedMs,
                        LastCommitId = Math.Max(other.LastCommitId, span.LastCommitId),
                    };
                    return;
                }
            }
        }

        if (spans.Count == MaxAppliedSpans)
        {
            var oldest = 0;
            for (var i = 1; i < spans.Count; i++)
            {
                if (spans[i].AppliedMs < spans[oldest].AppliedMs)
                {
                    oldest = i;
                }
            }

            spans.RemoveAt(oldest);
        }

        spans.Add(span);
    }

    /// <summary>
    /// Of the minutes settled, those with a window <paramref name="recomputed"/> over them that a commit applied after
    /// <paramref name="shownBefore"/> holds readings in (with the first and last such commit): each minute whose own
    /// window does, and one minute for each hour or day window that does (settling it again recomputes that window).
    /// </summary>
    private CommittedMinute[] AppliedLately(
        HashSet<(VitalKind Kind, long MinuteStartMs)> settled, HashSet<(VitalKind Kind, Resolution Resolution, long StartMs)> recomputed, long shownBefore)
    {
        var fresh = _appliedLately?.Where(span => span.AppliedMs > shownBefore).ToArray() ?? [];
        if (fresh.Length == 0 || recomputed.Count == 0)
        {
            return [];
        }

        var again = new List<CommittedMinute>();
        var covered = new HashSet<(VitalKind Kind, Resolution Resolution, long StartMs)>();
        foreach (var (kind, minuteStartMs) in settled.OrderBy(minute => minute.MinuteStartMs))
        {
            long first = long.MaxValue, last = long.MinValue;
            foreach (var resolution in ResolutionExtensions.All)
            {
                var startMs = resolution.WindowStart(minuteStartMs);
                if (!recomputed.Contains((kind, resolution, startMs)) || covered.Contains((kind, resolution, startMs)))
                {
                    continue;
                }

                var endMs = startMs + resolution.Milliseconds();
                foreach (var span in fresh)
                {
                    if (span.Kind == kind && span.FromMs < endMs && span.ToMs >= startMs)
                    {
                        (first, last) = (Math.Min(first, span.FirstCommitId), Math.Max(last, span.LastCommitId));
                    }
                }
            }

            if (first != long.MaxValue)
            {
                again.Add(new CommittedMinute(kind, minuteStartMs, first, last));
                foreach (var resolution in ResolutionExtensions.All)
                {
                    covered.Add((kind, resolution, resolution.WindowStart(minuteStartMs)));
                }
            }
        }

        return [.. again];
    }

    /// <summary>The open windows of <paramref name="kind"/>, or null when the activation has seen none of it.</summary>
    private VitalWindows? Find(VitalKind kind)
    {
        foreach (var windows in _vitals)
        {
            if (windows.Kind == kind)
            {
                return windows;
            }
        }

        return null;
    }

    private VitalWindows AddVital(VitalKind kind)
    {
        var windows = new VitalWindows(kind);
        _vitals = [.. _vitals, windows];
        return windows;
    }

    [LoggerMessage(EventId = 2002, Level = LogLevel.Warning, Message = "Applying readings to patient {PatientId} failed; the grain rebuilds from the raw store")]
    private static partial void LogApplyFailed(ILogger logger, Exception exception, string patientId);

    [LoggerMessage(EventId = 2003, Level = LogLevel.Information, Message = "Alert rules of patient {PatientId} set: {Rules} rules (template {Template})")]
    private static partial void LogRulesChanged(ILogger logger, string patientId, int rules, string? template);

    [LoggerMessage(EventId = 2008, Level = LogLevel.Warning, Message = "The windows patient {PatientId}'s ended day left open could not be written; the next read or reading tries again")]
    private static partial void LogEndedDayNotWritten(ILogger logger, Exception exception, string patientId);

    [LoggerMessage(EventId = 2004, Level = LogLevel.Warning, Message = "The alert timer of patient {PatientId} failed; it runs again shortly")]
    private static partial void LogAlertTimerFailed(ILogger logger, Exception exception, string patientId);

    [LoggerMessage(EventId = 2007, Level = LogLevel.Warning, Message = "Patient {PatientId} could not be activated again after giving its last activation up ({Attempts} tries so far); its alert clocks wait until it can")]
    private static partial void LogWakeFailed(ILogger logger, Exception exception, string patientId, int attempts);

    [LoggerMessage(EventId = 2006, Level = LogLevel.Warning, Message = "The live view of patient {PatientId} shows the vitals last seen before yesterday as last read: the rollups could not be read again")]
    private static partial void LogEarlierUnread(ILogger logger, Exception exception, string patientId);

    [LoggerMessage(EventId = 2005, Level = LogLevel.Warning, Message = "Patient {PatientId}'s alert state could not be written as it deactivated: its next activation may hand on events again, or start a sustain under way over")]
    private static partial void LogLastAlertStateUnwritten(ILogger logger, Exception exception, string patientId);

    [LoggerMessage(EventId = 2001, Level = LogLevel.Debug, Message = "Patient {PatientId} activated; rebuilt from {Windows} minute windows of the raw store")]
    private static partial void LogRebuilt(ILogger logger, string patientId, int windows);

    /// <summary>Readings of one vital from <see cref="FromMs"/> to <see cref="ToMs"/> that commits applied, the last at <see cref="AppliedMs"/>, hold.</summary>
    private readonly record struct AppliedSpan(VitalKind Kind, long FromMs, long ToMs, long AppliedMs, long FirstCommitId, long LastCommitId);
}
