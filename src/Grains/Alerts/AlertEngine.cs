using System.Globalization;
using System.Runtime.CompilerServices;
using Telemetry.Core.Alerts;
using Telemetry.Core.Readings;
using Telemetry.Core.Vitals;

namespace Telemetry.Grains.Alerts;

/// <summary>
/// Evaluates one patient's alert rules. Pure and single-threaded: readings and the clock come in as arguments, every
/// change to an alert goes into <see cref="AlertState.Outbox"/> as an event, and <see cref="NextDueMs"/> says when
/// <see cref="Tick"/> must run next (no-data, escalation, snooze expiry) even when no reading arrives.
/// </summary>
/// <remarks>
/// Conditions are judged in reading time (a sustained condition holds for N seconds of the patient's readings), so a
/// burst of buffered readings is judged as it happened; silence, snoozes and escalation run on the server's clock.
/// A reading older than <see cref="StaleAfterMs"/> is history: it raises or clears nothing and is not data arriving for
/// a no-data rule (replay judges history). One older than a reading of its vital already judged raises or clears
/// nothing either, but it is data arriving; while that reading is stamped ahead of the server's clock, older means
/// older than what was judged by the clock, and a reading stamped ahead is judged as of now (see <see cref="Observe"/>).
/// </remarks>
public sealed class AlertEngine
{
    /// <summary>Readings older than this when they arrive are history, not the patient's present.</summary>
    public const long StaleAfterMs = 15 * 60_000;

    /// <summary>An implausible-reading alert clears on a plausible reading once no implausible one has come for this long.</summary>
    public const long ImplausibleQuietMs = 60_000;

    /// <summary>A NEWS2 parameter counts towards the score while its latest reading is at most this much older than the newest.</summary>
    public const long EarlyWarningFreshMs = 60 * 60_000;

    /// <summary>
    /// An open early-warning alert clears only once the latest reading of each parameter, up to this old, scores under
    /// the clear level: a vital whose bad reading grew stale is missing, not better, for a day.
    /// </summary>
    public const long EarlyWarningHoldMs = 24 * 60 * 60_000;

    /// <summary>
    /// The least a lone reading's clock waits after its vital's last arrival (see <see cref="AloneDueMs"/>) for a reading
    /// that could break it: a phone bridge that uploads every minute or so has sent its next by then.
    /// </summary>
    public const long AloneGraceFloorMs = 60_000;

    /// <summary>An unacknowledged alert escalates at most this many times.</summary>
    public const int MaxEscalations = 3;

    private readonly string _patientId;

    // One entry per vital the patient has (seen, or named by a rule): a handful, found by a scan. The engine is kept for
    // every active patient, so it holds what the patient has rather than a slot for every kind there is.
    private VitalTrack[] _vitals = [];

    // The rules not of one vital's readings; empty arrays (shared) when the patient has none.
    private RuleRuntime[] _earlyWarning = [];
    private RuleRuntime[] _noData = [];
    private RuleRuntime[] _implausible = [];

    // When any vital last arrived (no-data rules of no one vital).
    private long _lastSeenAnyMs = long.MinValue;

    // The moment whose early-warning score is still to be judged: a score is judged once every reading of its moment is
    // in (a batch's heart rate and SpO2 of one second are scored together, not each with the other's value from
    // before), when a reading of another moment comes, on Tick, or at EndOfReadings.
    private long _scoreDueMs = long.MinValue;

    // When this server started, as StartWatching was told (long.MinValue before): a silence raises no sooner than a while
    // after it, since no device could send while the server was down.
    private long _serverStartedMs = long.MinValue;

    // Whether a rule may have a lone reading's sustain under way (see Judge): Observe then completes those due first.
    private bool _maybeAlone;

    // When this activation began (ResumeJudging; long.MinValue before): a lone reading's clock waits for devices from
    // then as from the server's start (AloneDueMs).
    private long _activatedMs = long.MinValue;

    public AlertEngine(string patientId, AlertState state)
    {
        _patientId = patientId;
        State = state;
        foreach (var (kind, judgedMs) in state.JudgedThroughMs ?? [])
        {
            ref var vital = ref Track(kind);
            vital.JudgedMs = judgedMs;
            vital.JudgedByClockMs = judgedMs;
        }

        BuildRuntimes();
    }

    public AlertState State { get; }

    public bool HasRules => State.Rules.Rules.Length > 0;

    /// <summary>
    /// Whether a rule is judged on several vitals at once (an early-warning score): its readings must then come in time
    /// across vitals, not only within each, so that each moment is scored with the values of that moment.
    /// </summary>
    public bool JudgesAcrossVitals => _earlyWarning.Length > 0;

    /// <summary>Whether a rule's condition, or an open alert's recovery, is being sustained: what a checkpoint of the state keeps.</summary>
    public bool HasSustainUnderWay
    {
        get
        {
            foreach (ref readonly var vital in _vitals.AsSpan())
            {
                if (UnderWay(vital.Rules))
                {
                    return true;
                }
            }

            return UnderWay(_earlyWarning);

            static bool UnderWay(RuleRuntime[]? runtimes)
            {
                foreach (var runtime in runtimes ?? [])
                {
                    if (runtime.PendingSinceMs != long.MinValue || runtime.RecoveringSinceMs != long.MinValue)
                    {
                        return true;
                    }
                }

                return false;
            }
        }
    }

    /// <summary>When <see cref="Tick"/> must run next, or null when nothing is waiting on the clock.</summary>
    public long? NextDueMs
    {
        get
        {
            var next = long.MaxValue;
            foreach (var alert in State.Open)
            {
                if (alert.Status == AlertStatus.Snoozed && alert.SnoozedUntil is { } until)
                {
                    next = Math.Min(next, until.ToUnixTimeMilliseconds());
                }
                else if (alert.Status == AlertStatus.Active && alert.EscalatesAt is { } escalates)
                {
                    next = Math.Min(next, escalates.ToUnixTimeMilliseconds());
                }
            }

            foreach (var runtime in _noData)
            {
                if (SilenceDeadline(runtime) is { } deadline && FindOpen(runtime.Rule.Id) is null)
                {
                    next = Math.Min(next, deadline);
                }
            }

            foreach (ref readonly var vital in _vitals.AsSpan())
            {
                foreach (var runtime in vital.Rules ?? [])
                {
                    if (AloneDueMs(vital, runtime) is { } due)
                    {
                        // It completes once its due time has passed: a reading stamped at that very moment is judged first.
                        next = Math.Min(next, due + 1);
                    }
                }
            }

            return next == long.MaxValue ? null : next;
        }
    }

    /// <summary>
    /// Marks a vital as seen with its latest reading (at its time, or <paramref name="nowMs"/> if later), without judging
    /// it: what an activation knows from the raw store. A grain activated again goes on counting a silence from there; a
    /// restart gives every device time to come back by itself (see <see cref="StartWatching"/>).
    /// </summary>
    public void Seed(VitalKind kind, long latestMs, double latestValue, long nowMs)
    {
        ref var vital = ref Track(kind);
        // A reading stamped ahead of the clock is taken as of now, as Observe judges it.
        latestMs = Math.Min(latestMs, nowMs);
        vital.LastSeenMs = Math.Max(vital.LastSeenMs, latestMs);
        _lastSeenAnyMs = Math.Max(_lastSeenAnyMs, latestMs);
        if (latestMs > vital.LatestMs)
        {
            vital.LatestMs = latestMs;
            vital.LatestValue = latestValue;
        }
    }

    /// <summary>
    /// Gives a vital its latest reading as the rules last knew it (<paramref name="latestMs"/>, at or before what they had
    /// judged of it), without judging it or counting it as data arriving: what an activation restores before the rules
    /// judge again the readings after it, so that a score over several vitals is judged with all of them.
    /// </summary>
    public void Restore(VitalKind kind, long latestMs, double latestValue)
    {
        ref var vital = ref Track(kind);
        if (latestMs > vital.LatestMs)
        {
            vital.LatestMs = latestMs;
            vital.LatestValue = latestValue;
        }
    }

    /// <summary>
    /// Gives the rate-of-change rules of the reading's vital a reading they judged before this activation (at or before
    /// <see cref="JudgedThroughMs"/>, and still news), without judging it again or counting it as data arriving: an
    /// activation's rate windows start from what the store holds of them, not empty (which would keep a rate from being
    /// seen until a third of its window had come in again).
    /// </summary>
    public void Warm(in VitalReading reading, long nowMs)
    {
        // Not one stamped ahead of the clock, which Observe judged as of when it came (not known now).
        if (reading.TimestampMs < nowMs - StaleAfterMs || reading.TimestampMs > nowMs || Find(reading.Kind) is not (var i and >= 0) || reading.TimestampMs > _vitals[i].JudgedMs)
        {
            return;
        }

        foreach (var runtime in _vitals[i].Rules ?? [])
        {
            runtime.Rate?.Add(reading.TimestampMs, reading.Value);
        }
    }

    /// <summary>How far back of what it judged a vital's readings fill its rate-of-change windows (see <see cref="Warm"/>): the longest window of its rules, 0 without any.</summary>
    public long RateWindowMs(VitalKind kind)
    {
        var longest = 0L;
        foreach (var runtime in Find(kind) is var i and >= 0 ? _vitals[i].Rules ?? [] : [])
        {
            if (runtime.Rule.Type == AlertRuleType.RateOfChange)
            {
                longest = Math.Max(longest, (runtime.Rule.WindowSeconds ?? AlertRule.DefaultWindowSeconds) * 1000L);
            }
        }

        return longest;
    }

    /// <summary>The time of the latest reading of <paramref name="kind"/> the rules judged (<see cref="long.MinValue"/> when none).</summary>
    public long JudgedThroughMs(VitalKind kind) => Find(kind) is var i and >= 0 ? _vitals[i].JudgedMs : long.MinValue;

    /// <summary>Records in <see cref="State"/>, about to be written, how far the rules have judged each vital.</summary>
    public void RecordJudged()
    {
        State.PendingSinceMs = null;
        State.LastInAlarmMs = null;
        State.RecoveringSinceMs = null;
        State.Alone = null;
        State.WatchedSinceMs = null;
        foreach (var runtime in _noData)
        {
            if (runtime.WatchedSinceMs != long.MinValue)
            {
                (State.WatchedSinceMs ??= [])[runtime.Rule.Id] = runtime.WatchedSinceMs;
            }
        }

        foreach (ref readonly var vital in _vitals.AsSpan())
        {
            if (vital.JudgedMs != long.MinValue)
            {
                (State.JudgedThroughMs ??= [])[vital.Kind] = vital.JudgedMs;
            }

            RecordPending(vital.Rules);
        }

        RecordPending(_earlyWarning);
    }

    /// <summary>
    /// At activation: the no-data rules watch from when each was set (persisted; the rules' time for a state from before
    /// that was kept), so monitoring that never began (a device never paired, an app never signed in) raises its alert
    /// too, whatever activations came between; and after <paramref name="serverStartedMs"/> every device has the rule's
    /// silence, <see cref="StaleAfterMs"/> at most, to come back before its silence raises (none could send while the
    /// server was down).
    /// </summary>
    public void StartWatching(long serverStartedMs)
    {
        _serverStartedMs = serverStartedMs;
        var rulesSetMs = State.RulesUpdatedAt?.ToUnixTimeMilliseconds() ?? serverStartedMs;
        foreach (var runtime in _noData)
        {
            if (runtime.WatchedSinceMs == long.MinValue)
            {
                runtime.WatchedSinceMs = rulesSetMs;
            }
        }
    }

    /// <summary>
    /// At activation: what each vital's rules judged before counts by the clock as judged by <paramref name="nowMs"/> at
    /// the latest, so that while a reading they judged is still ahead of the clock, the readings arriving from now on are
    /// judged (see <see cref="Observe"/>); readings judged before arrived before now.
    /// </summary>
    public void ResumeJudging(long nowMs)
    {
        _activatedMs = nowMs;
        foreach (ref var vital in _vitals.AsSpan())
        {
            vital.JudgedByClockMs = Math.Min(vital.JudgedByClockMs, nowMs);
        }
    }

    /// <summary>
    /// At activation: forgets a sustain (or an open alert's recovery) under way of a vital whose judged readings end
    /// before the last <see cref="StaleAfterMs"/>. The readings between could have ended the condition (or the
    /// recovery), and are not judged again (only what is still news is), so the sustain would be carried on over a gap
    /// and raise (or clear) on one reading.
    /// </summary>
    public void ForgetStaleSustains(long nowMs)
    {
        var scoreJudged = false;
        foreach (ref readonly var vital in _vitals.AsSpan())
        {
            if (vital.JudgedMs < nowMs - StaleAfterMs)
            {
                // Not a lone reading's: nothing was to follow it, and its sustain completes by the clock (see AloneDueMs).
                foreach (var runtime in vital.Rules ?? [])
                {
                    if (!IsAlone(runtime))
                    {
                        runtime.PendingSinceMs = long.MinValue;
                        runtime.RecoveringSinceMs = long.MinValue;
                    }
                }
            }
            else if (EarlyWarningScore.IsParameter(vital.Kind))
            {
                scoreJudged = true;
            }
        }

        // A score's sustain likewise, when none of the vitals it is computed from was judged in that time.
        if (!scoreJudged)
        {
            foreach (var runtime in _earlyWarning)
            {
                runtime.PendingSinceMs = long.MinValue;
                runtime.RecoveringSinceMs = long.MinValue;
            }
        }
    }

    /// <summary>Records the sustains and recoveries under way (see <see cref="AlertState.PendingSinceMs"/> and <see cref="AlertState.RecoveringSinceMs"/>).</summary>
    private void RecordPending(RuleRuntime[]? runtimes)
    {
        foreach (var runtime in runtimes ?? [])
        {
            if (runtime.PendingSinceMs != long.MinValue)
            {
                (State.PendingSinceMs ??= [])[runtime.Rule.Id] = runtime.PendingSinceMs;
                (State.LastInAlarmMs ??= [])[runtime.Rule.Id] = runtime.LastInAlarmMs;
            }

            if (runtime.RecoveringSinceMs != long.MinValue)
            {
                (State.RecoveringSinceMs ??= [])[runtime.Rule.Id] = runtime.RecoveringSinceMs;
            }

            if (IsAlone(runtime))
            {
                (State.Alone ??= [])[runtime.Rule.Id] = runtime.Alone!;
            }
        }
    }

    /// <summary>
    /// Replaces the rules. Open alerts of rules that are gone, or that now watch something else (another type, vital or
    /// direction), are cleared, saying so (<see cref="Alert.ClearReason"/>: not a recovery); the others are judged by
    /// their new levels from the next reading. A rule whose condition is as it was
    /// (changed in its priority, re-arm or escalation only, or not at all) carries on where it was (its sustain or recovery
    /// under way, its rate window, its watch for data): editing one rule does not hold back another's alert, nor its own.
    /// A new no-data rule watches from <paramref name="nowMs"/>, unless <paramref name="startWatching"/> is false (a
    /// replay, which cannot tell whether monitoring had begun before its first reading).
    /// </summary>
    public void SetRules(AlertRuleSet rules, long nowMs, bool startWatching = true)
    {
        // A score the readings before left due is judged by the rules they came under, and so is a spot check that fell
        // due before the edit (its timer waits behind this call).
        EndOfReadings(nowMs);
        if (_maybeAlone)
        {
            foreach (ref readonly var vital in _vitals.AsSpan())
            {
                CompleteDueAlone(vital, nowMs, nowMs);
            }
        }

        var before = Runtimes().ToDictionary(runtime => runtime.Rule.Id, StringComparer.Ordinal);
        State.Rules = rules;
        State.RulesUpdatedAt = DateTimeOffset.FromUnixTimeMilliseconds(nowMs);
        var byId = rules.Rules.ToDictionary(rule => rule.Id, StringComparer.Ordinal);
        foreach (var alert in State.Open.ToArray())
        {
            if (!byId.TryGetValue(alert.RuleId, out var rule))
            {
                Clear(alert, nowMs, RuleRemoved);
            }
            else if (before.GetValueOrDefault(alert.RuleId)?.Rule is { } was && WatchesSomethingElse(was, rule))
            {
                // Kept open, its old condition would be cleared by the new one's readings (a heart-rate alert by a good
                // SpO2), as if the patient had recovered.
                Clear(alert, nowMs, RuleChanged);
            }
            else if (FollowingItsRule(alert, rule, before.GetValueOrDefault(alert.RuleId)?.Rule, nowMs) is { } updated)
            {
                Replace(alert, updated);
                Emit(AlertEventType.Updated, updated, nowMs);
            }
        }

        if (State.SnoozedUntilMs is { } snoozes)
        {
            // A rule's snooze (for its next episode) no longer than its new priority allows from now.
            foreach (var (ruleId, until) in snoozes.ToArray())
            {
                if (byId.TryGetValue(ruleId, out var rule))
                {
                    snoozes[ruleId] = Math.Min(until, LongestSnoozeEndMs(rule.Priority, nowMs));
                }
            }
        }

        // A rule kept under its id but made to watch another type, vital or direction is a new condition: the old one's
        // snooze and re-arm guard do not hold its first episode back (a heart rate's snooze silencing a low SpO2).
        var kept = byId
            .Where(rule => before.GetValueOrDefault(rule.Key)?.Rule is not { } was || !WatchesSomethingElse(was, rule.Value))
            .ToDictionary(rule => rule.Key, rule => rule.Value, StringComparer.Ordinal);
        State.ClearedAtMs = WithRulesOf(State.ClearedAtMs, kept);
        State.SnoozedUntilMs = WithRulesOf(State.SnoozedUntilMs, kept);
        State.SnoozedByRule = WithRulesOf(State.SnoozedByRule, kept);

        // New levels: a sustain or a recovery under way by the old ones starts again by the new (BuildRuntimes carries
        // on those of the rules whose condition is unchanged, and the next write records them).
        State.PendingSinceMs = null;
        State.LastInAlarmMs = null;
        State.RecoveringSinceMs = null;
        State.Alone = null;
        State.WatchedSinceMs = null;

        BuildRuntimes(before, startWatching ? nowMs : long.MinValue);

        // A spot check under way (a reading that came alone, nothing after it to confirm or break it) of a threshold
        // whose condition the edit changed is judged again by the new one, as if it came now (its sustain starts again
        // from the edit, as every sustain the edit changes): left to a next reading, it would wait for one that a cuff or
        // a clipped-on oximeter may not send. Only while it is its vital's latest reading: after a later one, the next
        // reading judges by the new rule as any does.
        foreach (var runtime in Runtimes())
        {
            if (runtime.Rule.Type == AlertRuleType.Threshold
                && before.GetValueOrDefault(runtime.Rule.Id) is { Alone: { } alone } old && old != runtime
                && old.Rule.Type == AlertRuleType.Threshold && old.Rule.Kind == runtime.Rule.Kind
                && Find(runtime.Rule.Kind!.Value) is var at and >= 0 && _vitals[at].JudgedByClockMs <= alone.AtMs)
            {
                Judge(runtime, alone.Value, Math.Max(alone.AtMs, nowMs), nowMs, comesAlone: true);
            }
        }
    }

    /// <summary>When a snooze of an alert of <paramref name="priority"/> begun at <paramref name="nowMs"/> ends at the latest (<see cref="AlertSnooze.Longest"/>).</summary>
    private static long LongestSnoozeEndMs(AlertPriority priority, long nowMs) => nowMs + (long)AlertSnooze.Longest(priority).TotalMilliseconds;

    /// <summary>
    /// An open alert as its edited rule has it (null when unchanged): of the rule's priority now, so a rule raised to high
    /// makes its open alert high (snoozed for at most a high alert's longest snooze from now); and, when the rule's
    /// escalation changed, an active alert escalates after the new time (not at all when the rule no longer escalates,
    /// nor after it has escalated as often as it may). What the alert says, and when it was raised, stay as they were.
    /// </summary>
    private static Alert? FollowingItsRule(Alert alert, AlertRule rule, AlertRule? was, long nowMs)
    {
        var updated = alert with { Priority = rule.Priority };
        if (alert.SnoozedUntil is { } until && rule.Priority != alert.Priority)
        {
            var longest = LongestSnoozeEndMs(rule.Priority, nowMs);
            if (until.ToUnixTimeMilliseconds() > longest)
            {
                updated = updated with { SnoozedUntil = DateTimeOffset.FromUnixTimeMilliseconds(longest) };
            }
        }

        if (alert.Status == AlertStatus.Active && alert.EscalationLevel < MaxEscalations && was?.EscalateAfterSeconds != rule.EscalateAfterSeconds)
        {
            // Counted from where the old time was counted from (the alert's activation or its last escalation), so a
            // shorter time escalates sooner, at once when it is already past, and an edit never puts an escalation off
            // by starting its count again; from the edit when the rule did not escalate before.
            updated = updated with
            {
                EscalatesAt = rule.EscalateAfterSeconds is not { } seconds ? null
                    : alert.EscalatesAt is { } due && was?.EscalateAfterSeconds is { } before
                        ? DateTimeOffset.FromUnixTimeMilliseconds(Math.Max(nowMs, due.ToUnixTimeMilliseconds() + ((seconds - before) * 1000L)))
                        : EscalationTime(rule, nowMs),
            };
        }

        return updated == alert ? null : updated;
    }

    /// <summary>Every rule's runtime.</summary>
    private IEnumerable<RuleRuntime> Runtimes()
    {
        foreach (var vital in _vitals)
        {
            foreach (var runtime in vital.Rules ?? [])
            {
                yield return runtime;
            }
        }

        foreach (var runtime in _earlyWarning.Concat(_noData).Concat(_implausible))
        {
            yield return runtime;
        }
    }

    /// <summary>
    /// Judges one committed, plausible reading. Readings come in time order (within each vital, and across vitals when
    /// <see cref="JudgesAcrossVitals"/>); after the last of a batch, <see cref="EndOfReadings"/>. A fresh reading is
    /// data arriving, seen at <paramref name="nowMs"/>; or, for one judged again at an activation (it arrived before it,
    /// how long before is not known), at <paramref name="seenAtMs"/>, its own time: counted as seen when the activation
    /// came, a silence after it would raise that much later.
    /// </summary>
    public void Observe(in VitalReading reading, long nowMs, long? seenAtMs = null)
    {
        // A reading stamped ahead of the server's clock (a device's clock running fast: ingest takes up to
        // MaxFutureSkew of it) is judged as of now: at its own time, a sustain or recovery would be measured across the
        // two clocks when another device of the vital is set right (its reading, then the fast one a second later,
        // counted as five minutes held), and the re-arm guard likewise.
        var atMs = Math.Min(reading.TimestampMs, nowMs);
        if (_scoreDueMs != long.MinValue && atMs != _scoreDueMs)
        {
            JudgeScore(nowMs);
        }

        ref var vital = ref Track(reading.Kind);

        // A lone reading's sustain that fell due before this reading came, and before its time, completes first, as its
        // timer would have had it run on time (a grain's timer waits behind its calls); one stamped before the due time is
        // judged first, and may break it. Not for readings judged again at an activation, which came before it.
        if (_maybeAlone && seenAtMs is null)
        {
            CompleteDueAlone(vital, Math.Min(nowMs, reading.TimestampMs), nowMs);
        }

        var fresh = reading.TimestampMs >= nowMs - StaleAfterMs;
        if (fresh)
        {
            // Data arriving, as the no-data rules mean it: a live reading, not yesterday's uploaded late, which neither
            // clears a no-data alert nor starts the silence again while live monitoring is still absent.
            var seenMs = seenAtMs is { } seen ? Math.Min(seen, nowMs) : nowMs;
            vital.LastSeenMs = Math.Max(vital.LastSeenMs, seenMs);
            _lastSeenAnyMs = Math.Max(_lastSeenAnyMs, seenMs);
        }

        if (fresh && seenAtMs is null)
        {
            // How often its readings come in, live: not a reading's stamp from the store at an activation, nor a backlog.
            if (vital.LastArrivalMs != long.MinValue && nowMs > vital.LastArrivalMs && nowMs - vital.LastArrivalMs <= StaleAfterMs)
            {
                vital.ArrivalGapMs = nowMs - vital.LastArrivalMs;
            }

            vital.LastArrivalMs = Math.Max(vital.LastArrivalMs, nowMs);
        }

        // Judged if it is news and after what was judged (readings come back after a crash, see AlertState.JudgedThroughMs).
        // While the latest judged is stamped ahead of the clock, a reading not ahead is judged if after what was judged
        // by the clock: a device set right (or this one, its clock put right) is judged, not passed over until the clock
        // reaches that stamp. One still ahead is judged only after it, in its own time order: so a reading is never judged
        // twice (an activation judges a commit's readings again from the store before its call does).
        var present = fresh
            && (reading.TimestampMs > vital.JudgedMs
                || (vital.JudgedMs > nowMs && reading.TimestampMs <= nowMs && reading.TimestampMs > vital.JudgedByClockMs));

        // Whether the vital was silent before this reading for longer than what is news: no reading, judged or not (a
        // backlog too old to judge, a late one), in that time. Then it comes alone (see Judge); its vital's first too.
        var knownBeforeMs = Math.Max(vital.JudgedMs, vital.UnjudgedLatestMs);
        var silentBefore = knownBeforeMs == long.MinValue || reading.TimestampMs - knownBeforeMs > StaleAfterMs;
        if (present)
        {
            vital.JudgedMs = Math.Max(vital.JudgedMs, reading.TimestampMs);
            vital.JudgedByClockMs = Math.Max(vital.JudgedByClockMs, atMs);
        }
        else
        {
            // Too old to be news, or late: at or before what was judged (another device's, or the same reading given
            // again after an activation judged its commit from the store).
            NotJudged(ref vital, reading);
        }

        // The latest value (NEWS2 scores with it), on the clock too: of readings ahead, judged together at now, the last.
        if (fresh && (atMs > vital.LatestMs || (present && atMs == vital.LatestMs)))
        {
            vital.LatestMs = atMs;
            vital.LatestValue = reading.Value;
        }

        var rules = vital.Rules;

        if (!HasRules)
        {
            return;
        }

        if (fresh)
        {
            ClearNoData(reading.Kind, nowMs);
        }

        if (!present)
        {
            return;
        }

        if (rules is not null)
        {
            foreach (var runtime in rules)
            {
                if (runtime.Rule.Type == AlertRuleType.Threshold)
                {
                    Judge(runtime, reading.Value, atMs, nowMs, comesAlone: silentBefore);
                }
                else
                {
                    runtime.Rate!.Add(atMs, reading.Value);
                    if (runtime.Rate.TryGetSlopePerMinute(out var slope))
                    {
                        Judge(runtime, runtime.Rule.Direction == AlertDirection.Falling ? -slope : slope, atMs, nowMs);
                    }
                }
            }
        }

        if (_earlyWarning.Length > 0 && EarlyWarningScore.IsParameter(reading.Kind))
        {
            _scoreDueMs = atMs;
        }

        foreach (var runtime in _implausible)
        {
            if (FindOpen(runtime.Rule.Id) is not { } open || open.Kind != reading.Kind)
            {
                continue;
            }

            if (runtime.LastImplausibleMs == long.MinValue)
            {
                // Open from before this activation (or these rules): when the last implausible reading came is not known,
                // so the quiet period runs from now.
                runtime.LastImplausibleMs = nowMs;
            }
            else if (nowMs - runtime.LastImplausibleMs >= ImplausibleQuietMs)
            {
                Clear(open, nowMs);
                (State.ClearedAtMs ??= [])[runtime.Rule.Id] = nowMs;
            }
        }
    }

    /// <summary>Judges what the last readings given to <see cref="Observe"/> left to judge: the early-warning score of their moment.</summary>
    public void EndOfReadings(long nowMs)
    {
        if (_scoreDueMs != long.MinValue)
        {
            JudgeScore(nowMs);
        }
    }

    /// <summary>
    /// Judges the early-warning score of the moment due. Raised on the fresh vitals' score; cleared only when the latest
    /// value of every vital scored in the last day recovers: a vital whose bad reading grew old, with none after it, is
    /// missing, not better.
    /// </summary>
    private void JudgeScore(long nowMs)
    {
        var atMs = _scoreDueMs;
        _scoreDueMs = long.MinValue;
        var score = CurrentEarlyWarningScore(atMs);
        var latestScore = CurrentEarlyWarningScore(atMs, EarlyWarningHoldMs);
        foreach (var runtime in _earlyWarning)
        {
            Judge(runtime, score, atMs, nowMs, recoveryValue: latestScore);
        }
    }

    /// <summary>
    /// Judges a reading refused as implausible: a sensor fault, raised as a technical alert and never starts a clinical
    /// one (but see <see cref="ObserveImplausibleBeyondRange"/>).
    /// </summary>
    public void ObserveImplausible(in VitalReading reading, long nowMs)
    {
        if (reading.TimestampMs < nowMs - StaleAfterMs)
        {
            return;
        }

        foreach (var runtime in _implausible)
        {
            if (runtime.Rule.Kind is { } kind && kind != reading.Kind)
            {
                continue;
            }

            runtime.LastImplausibleMs = nowMs;
            if (FindOpen(runtime.Rule.Id) is null && IsArmed(runtime.Rule, nowMs))
            {
                var definition = VitalCatalogue.Get(reading.Kind);
                var message = string.Create(CultureInfo.InvariantCulture,
                    $"{definition.Label} reading implausible: {reading.Value:0.##} {definition.Unit} is outside {definition.PlausibleMin:0.##}–{definition.PlausibleMax:0.##} {definition.Unit}; check the sensor");
                Raise(runtime.Rule, reading.Kind, reading.Value, reading.TimestampMs, message, nowMs);
            }
        }
    }

    /// <summary>
    /// Judges, for the thresholds of its vital, a reading refused as implausible past the plausible range on the side a
    /// threshold alarms on (SpO2 under 50 after readings of 84, a respiratory rate of 0): it goes on with the sustain
    /// already under way, or holds the open alert, as a reading past the level would; the condition it confirms is the
    /// one the patient was in, and passed over, the sustain would wait for a plausible reading that may never come while
    /// the patient worsens. It starts nothing. Given after the plausible readings that came with it, and judged only
    /// when later than every reading of its vital judged, so it never comes before a reading stamped earlier.
    /// </summary>
    public void ObserveImplausibleBeyondRange(in VitalReading reading, long nowMs)
    {
        if (reading.TimestampMs < nowMs - StaleAfterMs)
        {
            return;
        }

        var vitalAt = Find(reading.Kind);
        if (vitalAt >= 0 && _vitals[vitalAt].Rules is { } rules && reading.TimestampMs > _vitals[vitalAt].JudgedMs)
        {
            var definition = VitalCatalogue.Get(reading.Kind);
            var atMs = Math.Min(reading.TimestampMs, nowMs);
            foreach (var runtime in rules)
            {
                var rule = runtime.Rule;
                var pastTheAlarmSide = rule.Direction == AlertDirection.Below ? reading.Value < definition.PlausibleMin : reading.Value > definition.PlausibleMax;
                if (rule.Type == AlertRuleType.Threshold && pastTheAlarmSide && atMs > runtime.LastJudgedMs
                    && (runtime.PendingSinceMs != long.MinValue || FindOpen(rule.Id) is not null))
                {
                    Judge(runtime, reading.Value, atMs, nowMs);
                }
            }
        }
    }

    /// <summary>Runs what is due on the clock: snoozes that ran out, escalations, silences long enough to raise a no-data alert.</summary>
    public void Tick(long nowMs)
    {
        EndOfReadings(nowMs);
        foreach (var alert in State.Open.ToArray())
        {
            if (alert.Status == AlertStatus.Snoozed && alert.SnoozedUntil is { } until && until.ToUnixTimeMilliseconds() <= nowMs)
            {
                // Back to what it was: an acknowledged alert stays acknowledged (someone is on it), and one that has
                // escalated as often as it may escalates no more.
                var active = alert.AcknowledgedAt is not null
                    ? alert with { Status = AlertStatus.Acknowledged, SnoozedUntil = null, EscalatesAt = null }
                    : alert with
                    {
                        Status = AlertStatus.Active,
                        SnoozedUntil = null,
                        EscalatesAt = alert.EscalationLevel < MaxEscalations ? EscalationTime(alert.RuleId, until.ToUnixTimeMilliseconds(), nowMs) : null,
                    };
                Replace(alert, active);
                Emit(AlertEventType.Reactivated, active, nowMs);
            }
            else if (alert.Status == AlertStatus.Active && alert.EscalatesAt is { } escalates && escalates.ToUnixTimeMilliseconds() <= nowMs)
            {
                var level = alert.EscalationLevel + 1;
                var escalated = alert with { EscalationLevel = level, EscalatesAt = level < MaxEscalations ? EscalationTime(alert.RuleId, escalates.ToUnixTimeMilliseconds(), nowMs) : null };
                Replace(alert, escalated);
                Emit(AlertEventType.Escalated, escalated, nowMs);
            }
        }

        if (State.SnoozedUntilMs is { } snoozes)
        {
            foreach (var (rule, until) in snoozes.ToArray())
            {
                if (until <= nowMs)
                {
                    snoozes.Remove(rule);
                    State.SnoozedByRule?.Remove(rule);
                }
            }

            State.SnoozedUntilMs = snoozes.Count > 0 ? snoozes : null;
            State.SnoozedByRule = State.SnoozedByRule?.Count > 0 ? State.SnoozedByRule : null;
        }

        foreach (var runtime in _noData)
        {
            if (SilenceDeadline(runtime) is { } deadline && deadline <= nowMs && FindOpen(runtime.Rule.Id) is null)
            {
                // Triggered when the vital was last seen, or the rule started watching (the deadline may be the re-arm's,
                // or a restart's, later than the silence's).
                var (silentSince, everSeen) = SilentSince(runtime);
                var since = everSeen ? $"no readings for {FormatDuration(runtime.Rule.SilenceSeconds!.Value)}" : "no readings since monitoring started";
                var message = runtime.Rule.Kind is { } kind
                    ? $"{VitalCatalogue.Get(kind).Label}: {since}; check the device and its connection"
                    : $"{char.ToUpperInvariant(since[0])}{since[1..]}; check the devices and their connection";
                Raise(runtime.Rule, runtime.Rule.Kind, null, silentSince, message, nowMs);
            }
        }

        var maybeAlone = false;
        foreach (ref readonly var vital in _vitals.AsSpan())
        {
            CompleteDueAlone(vital, nowMs, nowMs);
            foreach (var runtime in vital.Rules ?? [])
            {
                maybeAlone |= runtime.Alone is not null;
            }
        }

        _maybeAlone = maybeAlone;
    }

    /// <summary>
    /// Whether the rule's sustain (or recovery) under way is one a lone reading began, and no reading has broken since
    /// (see <see cref="Judge"/>): the one under way is still the one the reading began.
    /// </summary>
    private bool IsAlone(RuleRuntime runtime) =>
        runtime.Alone is { } alone && alone.AtMs == (FindOpen(runtime.Rule.Id) is null ? runtime.PendingSinceMs : runtime.RecoveringSinceMs);

    /// <summary>
    /// When the sustain (or recovery) a lone reading began completes by the clock, or null when the rule has none under
    /// way: once its time plus the sustain has passed (or, if later, the vital's last arrival, the server's start or the
    /// activation), and after that a device's next reading, which could break it, has had time to come (twice the time
    /// between the vital's last live arrivals, at most what is news, at least <see cref="AloneGraceFloorMs"/>: a reading
    /// stamped at the sustain's end arrives after it); to raise, once the rule is re-armed.
    /// </summary>
    private long? AloneDueMs(in VitalTrack vital, RuleRuntime runtime)
    {
        if (!IsAlone(runtime))
        {
            return null;
        }

        var alone = runtime.Alone!;
        var graceMs = Math.Clamp(2 * vital.ArrivalGapMs, AloneGraceFloorMs, StaleAfterMs);
        var due = Math.Max(alone.AtMs + (runtime.Rule.SustainSeconds * 1000L), Math.Max(vital.LastSeenMs, Math.Max(_serverStartedMs, _activatedMs))) + graceMs;
        return FindOpen(runtime.Rule.Id) is null ? Math.Max(due, RearmedAtMs(runtime.Rule)) : due;
    }

    /// <summary>
    /// A reading of a vital that came and was not judged (too old to be news, late, or judged before and given again):
    /// its vital was not silent then. A lone reading of it is broken by one from its silence or after it that does not
    /// agree with it (short of the level, or of the clear level for a recovery), as a judged one would; one that agrees
    /// holds it (the same reading given again among them).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void NotJudged(ref VitalTrack vital, in VitalReading reading)
    {
        vital.UnjudgedLatestMs = Math.Max(vital.UnjudgedLatestMs, reading.TimestampMs);
        if (!_maybeAlone)
        {
            return;
        }

        foreach (var runtime in vital.Rules ?? [])
        {
            if (runtime.Alone is { } alone && reading.TimestampMs > alone.AtMs - StaleAfterMs && !Agrees(runtime, reading.Value))
            {
                runtime.Alone = null;
            }
        }
    }

    /// <summary>
    /// A stored reading an activation reads that the rules had judged (see <see cref="Warm"/>): a lone reading's sustain
    /// under way is broken by it as by one that came and was not judged (<see cref="NotJudged"/>).
    /// </summary>
    public void ObserveJudgedBefore(in VitalReading reading)
    {
        if (_maybeAlone && Find(reading.Kind) is var i and >= 0)
        {
            NotJudged(ref _vitals[i], reading);
        }
    }

    /// <summary>Whether <paramref name="value"/> holds the rule's sustain under way: at or past the level, or, while its alert is open, past the clear level.</summary>
    private bool Agrees(RuleRuntime runtime, double value)
    {
        var rule = runtime.Rule;
        var level = rule.Level!.Value;
        var below = rule.Direction == AlertDirection.Below;
        if (FindOpen(rule.Id) is null)
        {
            return below ? value <= level : value >= level;
        }

        var clearLevel = rule.ClearLevel ?? level;
        return below ? value > clearLevel : value < clearLevel;
    }

    /// <summary>
    /// Completes the lone readings' sustains of <paramref name="vital"/> that fell due before <paramref name="dueBeforeMs"/>
    /// (the clock's time, see <see cref="Tick"/>; or, for a reading coming in, the earlier of that and its own time).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void CompleteDueAlone(in VitalTrack vital, long dueBeforeMs, long nowMs)
    {
        foreach (var runtime in vital.Rules ?? [])
        {
            if (AloneDueMs(vital, runtime) is { } due && due < dueBeforeMs)
            {
                CompleteAlone(runtime, nowMs);
            }
        }
    }

    /// <summary>
    /// The time of the earliest lone reading of <paramref name="kind"/> whose sustain is under way (see <see cref="Judge"/>),
    /// or null: an activation reads the stored readings after it, so that one come since and lost with a crash before its
    /// call still breaks it.
    /// </summary>
    public long? AloneSinceMs(VitalKind kind)
    {
        long? since = null;
        foreach (var runtime in Find(kind) is var i and >= 0 ? _vitals[i].Rules ?? [] : [])
        {
            if (IsAlone(runtime))
            {
                since = Math.Min(since ?? long.MaxValue, runtime.Alone!.AtMs);
            }
        }

        return since;
    }

    /// <summary>
    /// A lone reading that no reading broke before its due time stands for the whole of its sustain: the alert is raised
    /// as triggered once the sustain had passed since the reading (as one confirmed by readings is), or the open alert
    /// cleared. A clear made so arms no re-arm guard: had the vital's readings resumed at once, the guard would hold back
    /// an episode no reading had confirmed over.
    /// </summary>
    private void CompleteAlone(RuleRuntime runtime, long nowMs)
    {
        var alone = runtime.Alone!;
        runtime.Alone = null;
        if (FindOpen(runtime.Rule.Id) is { } open)
        {
            Clear(open, nowMs);
            runtime.PendingSinceMs = long.MinValue;
            runtime.RecoveringSinceMs = long.MinValue;
        }
        else
        {
            runtime.PendingSinceMs = long.MinValue;
            var triggeredMs = alone.AtMs + (runtime.Rule.SustainSeconds * 1000L);
            Raise(runtime.Rule, runtime.Rule.Kind, alone.Value, triggeredMs, Describe(runtime.Rule, alone.Value), nowMs);
        }
    }

    /// <summary>
    /// Whether a lone reading's sustain under way differs from what the state was last written with (one began, or one
    /// written was broken): the state is written again at once, so that a crash neither loses a spot check nor has the
    /// next activation complete one that a reading had broken.
    /// </summary>
    public bool AloneChangedSinceRecorded
    {
        get
        {
            var recorded = 0;
            foreach (ref readonly var vital in _vitals.AsSpan())
            {
                foreach (var runtime in vital.Rules ?? [])
                {
                    var alone = IsAlone(runtime) ? runtime.Alone : null;
                    var written = State.Alone?.GetValueOrDefault(runtime.Rule.Id);
                    if (alone != written)
                    {
                        return true;
                    }

                    recorded += written is null ? 0 : 1;
                }
            }

            return recorded != (State.Alone?.Count ?? 0);
        }
    }

    /// <summary>Acknowledges an open alert: it stops escalating and stays open until its condition clears. Null when no such alert is open.</summary>
    public Alert? Acknowledge(string alertId, string by, long nowMs)
    {
        if (FindOpenAlert(alertId) is not { } alert)
        {
            return null;
        }

        if (alert.Status == AlertStatus.Acknowledged)
        {
            return alert;
        }

        // Acknowledged, the alert is no longer snoozed, and nor is its rule: a later episode does not start snoozed.
        State.SnoozedUntilMs?.Remove(alert.RuleId);
        State.SnoozedByRule?.Remove(alert.RuleId);
        var acknowledged = alert with
        {
            Status = AlertStatus.Acknowledged,
            AcknowledgedAt = DateTimeOffset.FromUnixTimeMilliseconds(nowMs),
            AcknowledgedBy = by,
            SnoozedUntil = null,
            EscalatesAt = null,
        };
        Replace(alert, acknowledged);
        Emit(AlertEventType.Acknowledged, acknowledged, nowMs);
        return acknowledged;
    }

    /// <summary>
    /// Silences an open alert until <paramref name="untilMs"/>, at most for its priority's longest snooze
    /// (<see cref="AlertSnooze.Longest"/>); if its condition still holds then, it is active again (acknowledged again,
    /// when it was: it does not escalate). A new episode of the same rule raised meanwhile starts snoozed too, by the
    /// same person. Null when no such alert is open.
    /// </summary>
    public Alert? Snooze(string alertId, long untilMs, string by, long nowMs)
    {
        if (FindOpenAlert(alertId) is not { } alert)
        {
            return null;
        }

        untilMs = Math.Min(untilMs, LongestSnoozeEndMs(alert.Priority, nowMs));

        var snoozed = alert with
        {
            Status = AlertStatus.Snoozed,
            SnoozedUntil = DateTimeOffset.FromUnixTimeMilliseconds(untilMs),
            SnoozedBy = by,
            EscalatesAt = null,
        };
        (State.SnoozedUntilMs ??= [])[alert.RuleId] = untilMs;
        (State.SnoozedByRule ??= [])[alert.RuleId] = by;
        Replace(alert, snoozed);
        Emit(AlertEventType.Snoozed, snoozed, nowMs);
        return snoozed;
    }

    /// <summary>
    /// The NEWS2 score of the latest value of each parameter at most <paramref name="freshForMs"/> (an hour unless said)
    /// older than <paramref name="atMs"/>.
    /// </summary>
    public int CurrentEarlyWarningScore(long atMs, long freshForMs = EarlyWarningFreshMs)
    {
        var score = 0;
        foreach (ref readonly var vital in _vitals.AsSpan())
        {
            if (EarlyWarningScore.IsParameter(vital.Kind) && vital.LatestMs != long.MinValue && vital.LatestMs >= atMs - freshForMs)
            {
                score += EarlyWarningScore.Points(vital.Kind, vital.LatestValue);
            }
        }

        return score;
    }

    /// <summary>
    /// The one place a condition becomes an alert. Raise at the level, sustained; clear only past the clear level
    /// (hysteresis), sustained as long, so a value hovering at the level makes one episode and a single reading does not
    /// end one. A sustain under way is given up by a value past
    /// the clear level, or by one between the two levels once the last at or past the level is longer ago than the
    /// sustain (or two of the vital's intervals, if it comes more rarely): a value swinging about the level (SpO2 89,
    /// 91, 89) still raises, one sitting between the levels for long (SpO2 91 for an hour after a single 90) does not. After a clear, the re-arm guard must pass.
    /// <paramref name="recoveryValue"/>, when given, is what must pass back over the clear level to clear an open alert,
    /// instead of <paramref name="value"/>.
    /// </summary>
    private void Judge(RuleRuntime runtime, double value, long timestampMs, long nowMs, double? recoveryValue = null, bool comesAlone = false)
    {
        var rule = runtime.Rule;
        var level = rule.Level!.Value;
        var clearLevel = rule.ClearLevel ?? level;
        var below = rule.Direction == AlertDirection.Below;
        var inAlarm = below ? value <= level : value >= level;
        var recovering = recoveryValue ?? value;
        var recovered = below ? recovering > clearLevel : recovering < clearLevel;

        // How often the rule's readings come (an episode open or not), for how long a spell between the levels may last.
        var interval = runtime.LastJudgedMs == long.MinValue ? 0 : Math.Max(0, timestampMs - runtime.LastJudgedMs);
        runtime.LastJudgedMs = Math.Max(runtime.LastJudgedMs, timestampMs);

        // A threshold's reading that comes alone (its vital's first, or its first after a silence longer than what is
        // news: a spot check, from a cuff, a thermometer, a pulse oximeter clipped on now and then) and starts a sustain,
        // or its open alert's recovery: readings after it go on from there as usual, and while none breaks it (one short
        // of the level, or back short of the clear level), it completes by the clock (Tick, see AloneDueMs), where before
        // a spot check's readings could not confirm it.
        var sustainMs = rule.SustainSeconds * 1000L;
        var alone = comesAlone && sustainMs > 0;

        if (FindOpen(rule.Id) is { } open)
        {
            // A recovery is confirmed as a condition is: past the clear level for the sustain, every reading of it. One
            // reading past it (SpO2 93 once in an hour of 88) clears nothing, so the re-arm that follows a clear never
            // holds back an episode that had not ended.
            // Confirmed by readings at most StaleAfterMs apart: across a longer gap, the readings between (come late, so
            // not judged, or never sent) could have been bad, so the recovery starts again, as at an activation.
            if (!recovered || interval > StaleAfterMs)
            {
                runtime.RecoveringSinceMs = long.MinValue;
            }

            if (!recovered)
            {
                runtime.Alone = null;
                return;
            }

            if (runtime.RecoveringSinceMs == long.MinValue)
            {
                runtime.RecoveringSinceMs = timestampMs;
                runtime.Alone = alone ? new AloneReading(timestampMs, value) : null;
                _maybeAlone |= alone;
            }

            if (timestampMs - runtime.RecoveringSinceMs >= sustainMs)
            {
                Clear(open, nowMs);
                (State.ClearedAtMs ??= [])[rule.Id] = timestampMs;
                runtime.PendingSinceMs = long.MinValue;
                runtime.RecoveringSinceMs = long.MinValue;
                runtime.Alone = null;
            }

            return;
        }

        if (!inAlarm)
        {
            // A spell between the levels may last the sustain, or two of the vital's intervals if it comes more rarely
            // (a CGM's five minutes against a five-minute sustain: 69, 71, 69 is one sustain).
            var spell = Math.Max(sustainMs, 2 * interval);
            if (recovered || (runtime.LastInAlarmMs != long.MinValue && timestampMs - runtime.LastInAlarmMs > spell))
            {
                runtime.PendingSinceMs = long.MinValue;
            }

            runtime.Alone = null;
            return;
        }

        runtime.LastInAlarmMs = Math.Max(runtime.LastInAlarmMs, timestampMs);
        if (runtime.PendingSinceMs == long.MinValue)
        {
            runtime.PendingSinceMs = timestampMs;
            runtime.Alone = alone ? new AloneReading(timestampMs, value) : null;
            _maybeAlone |= alone;
        }

        if (timestampMs - runtime.PendingSinceMs < sustainMs || !IsArmed(rule, timestampMs))
        {
            return;
        }

        runtime.PendingSinceMs = long.MinValue;
        runtime.Alone = null;
        Raise(rule, rule.Kind, value, timestampMs, Describe(rule, value), nowMs);
    }

    private bool IsArmed(AlertRule rule, long atMs) => atMs >= RearmedAtMs(rule);

    /// <summary>When the re-arm guard of the rule's last clear ends (<see cref="long.MinValue"/> when it holds nothing back).</summary>
    private long RearmedAtMs(AlertRule rule) =>
        State.ClearedAtMs?.TryGetValue(rule.Id, out var clearedAt) == true ? clearedAt + (rule.RearmSeconds * 1000L) : long.MinValue;

    /// <summary>When the rule's vital (or any vital) was last seen; <see cref="long.MinValue"/> when never.</summary>
    private long LastSeen(RuleRuntime runtime) =>
        runtime.Rule.Kind is not { } kind ? _lastSeenAnyMs : Find(kind) is var i and >= 0 ? _vitals[i].LastSeenMs : long.MinValue;

    /// <summary>
    /// Since when the rule's vital (or any vital) has been silent: when it was last seen (this activation, or, before it,
    /// its latest reading the rules judged, as persisted), or when the rule started watching if it never was
    /// (<see cref="long.MinValue"/> when it has not started: a replay's before its first reading).
    /// </summary>
    private (long SilentSinceMs, bool EverSeen) SilentSince(RuleRuntime runtime)
    {
        var lastSeen = LastSeen(runtime);
        if (lastSeen != long.MinValue)
        {
            return (lastSeen, true);
        }

        var judged = long.MinValue;
        foreach (ref readonly var vital in _vitals.AsSpan())
        {
            if (runtime.Rule.Kind is null || runtime.Rule.Kind == vital.Kind)
            {
                judged = Math.Max(judged, vital.JudgedMs);
            }
        }

        return judged != long.MinValue ? (judged, true) : (runtime.WatchedSinceMs, false);
    }

    private long? SilenceDeadline(RuleRuntime runtime)
    {
        var (silentSince, _) = SilentSince(runtime);
        if (silentSince == long.MinValue)
        {
            return null;
        }

        // Raised no sooner than the silence, StaleAfterMs at most, after the server started: no device could send while it
        // was down, and one that went silent well before still raises soon after a restart.
        var silenceMs = runtime.Rule.SilenceSeconds!.Value * 1000L;
        var deadline = Math.Max(silentSince + silenceMs, _serverStartedMs == long.MinValue ? long.MinValue : _serverStartedMs + Math.Min(silenceMs, StaleAfterMs));
        return State.ClearedAtMs?.TryGetValue(runtime.Rule.Id, out var clearedAt) == true
            ? Math.Max(deadline, clearedAt + (runtime.Rule.RearmSeconds * 1000L))
            : deadline;
    }

    private void ClearNoData(VitalKind kind, long nowMs)
    {
        foreach (var runtime in _noData)
        {
            if ((runtime.Rule.Kind is null || runtime.Rule.Kind == kind) && FindOpen(runtime.Rule.Id) is { } open)
            {
                Clear(open, nowMs);
                (State.ClearedAtMs ??= [])[runtime.Rule.Id] = nowMs;
            }
        }
    }

    private void Raise(AlertRule rule, VitalKind? kind, double? value, long triggeredAtMs, string message, long nowMs)
    {
        // A new episode of a snoozed rule starts snoozed, for no longer than its priority allows (the rule's priority may
        // have risen since the snooze).
        var snoozedUntil = State.SnoozedUntilMs?.TryGetValue(rule.Id, out var until) == true && until > nowMs
            ? Math.Min(until, LongestSnoozeEndMs(rule.Priority, nowMs))
            : (long?)null;
        var alert = new Alert(
            AlertIds.Format(_patientId, ++State.LastEpisode),
            _patientId,
            rule.Id,
            rule.Type,
            rule.Category,
            rule.Priority,
            kind,
            snoozedUntil is null ? AlertStatus.Active : AlertStatus.Snoozed,
            message,
            value,
            // Not after it was raised: a reading stamped ahead of the server's clock (a device's clock running fast).
            DateTimeOffset.FromUnixTimeMilliseconds(Math.Min(triggeredAtMs, nowMs)),
            DateTimeOffset.FromUnixTimeMilliseconds(nowMs),
            SnoozedUntil: snoozedUntil is { } snooze ? DateTimeOffset.FromUnixTimeMilliseconds(snooze) : null,
            EscalatesAt: snoozedUntil is null ? EscalationTime(rule, nowMs) : null,
            SnoozedBy: snoozedUntil is null ? null : State.SnoozedByRule?.GetValueOrDefault(rule.Id));
        State.Open.Add(alert);
        Emit(AlertEventType.Raised, alert, nowMs);
    }

    /// <summary>What <see cref="Alert.ClearReason"/> says of an alert whose rule was removed.</summary>
    public const string RuleRemoved = "its rule was removed from the patient's rules; the condition was not seen to end";

    /// <summary>What <see cref="Alert.ClearReason"/> says of an alert whose rule, under the same id, now watches something else.</summary>
    public const string RuleChanged = "its rule now watches another type, vital or direction; the condition was not seen to end";

    /// <summary>Whether a rule edited under the same id watches another condition: not its levels, its subject.</summary>
    private static bool WatchesSomethingElse(AlertRule was, AlertRule rule) =>
        was.Type != rule.Type || was.Kind != rule.Kind || was.Direction != rule.Direction;

    private void Clear(Alert alert, long nowMs, string? reason = null)
    {
        var cleared = alert with { Status = AlertStatus.Cleared, ClearedAt = DateTimeOffset.FromUnixTimeMilliseconds(nowMs), EscalatesAt = null, ClearReason = reason };
        State.Open.Remove(alert);
        Emit(AlertEventType.Cleared, cleared, nowMs);
    }

    private void Replace(Alert old, Alert updated) => State.Open[State.Open.IndexOf(old)] = updated;

    private void Emit(AlertEventType type, Alert alert, long nowMs) =>
        State.Outbox.Add(new AlertEvent(_patientId, ++State.LastEventSeq, type, DateTimeOffset.FromUnixTimeMilliseconds(nowMs), alert));

    private DateTimeOffset? EscalationTime(string ruleId, long nowMs) =>
        State.Rules.Rules.FirstOrDefault(rule => rule.Id == ruleId) is { } rule ? EscalationTime(rule, nowMs) : null;

    /// <summary>
    /// The next escalation after one that fell due at <paramref name="dueMs"/> (or a snooze that ended then), counted from
    /// then so that a timer run late does not push every later one back; from now when that time has passed too (the
    /// server was down), so that escalations do not come in a burst.
    /// </summary>
    private DateTimeOffset? EscalationTime(string ruleId, long dueMs, long nowMs) =>
        EscalationTime(ruleId, dueMs) is { } next && next.ToUnixTimeMilliseconds() > nowMs ? next : EscalationTime(ruleId, nowMs);

    private static DateTimeOffset? EscalationTime(AlertRule rule, long nowMs) =>
        rule.EscalateAfterSeconds is { } seconds ? DateTimeOffset.FromUnixTimeMilliseconds(nowMs + (seconds * 1000L)) : null;

    private Alert? FindOpen(string ruleId)
    {
        foreach (var alert in State.Open)
        {
            if (alert.RuleId == ruleId)
            {
                return alert;
            }
        }

        return null;
    }

    /// <summary>The patient's open alert of that id, or null.</summary>
    public Alert? FindOpenAlert(string alertId)
    {
        foreach (var alert in State.Open)
        {
            if (alert.AlertId == alertId)
            {
                return alert;
            }
        }

        return null;
    }

    private static string FormatDuration(int seconds) => seconds switch
    {
        < 60 => string.Create(CultureInfo.InvariantCulture, $"{seconds} s"),
        < 7200 => string.Create(CultureInfo.InvariantCulture, $"{seconds / 60.0:0.#} min"),
        _ => string.Create(CultureInfo.InvariantCulture, $"{seconds / 3600.0:0.#} h"),
    };

    private static string Describe(AlertRule rule, double value)
    {
        var side = rule.Direction switch
        {
            AlertDirection.Below => "at or below",
            _ => "at or above",
        };
        if (rule.Type == AlertRuleType.EarlyWarning)
        {
            return string.Create(CultureInfo.InvariantCulture, $"NEWS2 score {value:0} is {side} {rule.Level:0}");
        }

        var definition = VitalCatalogue.Get(rule.Kind!.Value);
        if (rule.Type == AlertRuleType.RateOfChange)
        {
            var moving = rule.Direction == AlertDirection.Falling ? "falling" : "rising";
            return string.Create(CultureInfo.InvariantCulture,
                $"{definition.Label} {moving} {value:0.##} {definition.Unit}/min, at or faster than {rule.Level:0.##} {definition.Unit}/min");
        }

        return string.Create(CultureInfo.InvariantCulture, $"{definition.Label} {value:0.##} {definition.Unit} is {side} {rule.Level:0.##} {definition.Unit}");
    }

    /// <summary>
    /// Makes each rule's runtime from <see cref="State"/>; a rule in <paramref name="before"/> (the rules replaced) whose
    /// condition is as it was keeps its runtime, one whose rate window is as it was keeps the readings in it, and a
    /// no-data rule of the same vital its watch (neither depends on the levels); a new no-data rule watches from
    /// <paramref name="watchFromMs"/>.
    /// </summary>
    private void BuildRuntimes(Dictionary<string, RuleRuntime>? before = null, long watchFromMs = long.MinValue)
    {
        _maybeAlone |= State.Alone is not null || before?.Values.Any(runtime => runtime.Alone is not null) == true;
        foreach (ref var vital in _vitals.AsSpan())
        {
            vital.Rules = null;
        }

        _earlyWarning = _noData = _implausible = [];
        foreach (var rule in State.Rules.Rules)
        {
            var old = before?.GetValueOrDefault(rule.Id);
            var runtime = old is not null && SameCondition(old.Rule, rule) ? old : new RuleRuntime(rule)
            {
                PendingSinceMs = State.PendingSinceMs?.GetValueOrDefault(rule.Id, long.MinValue) ?? long.MinValue,
                LastInAlarmMs = State.LastInAlarmMs?.GetValueOrDefault(rule.Id, long.MinValue) is { } last and not long.MinValue
                    ? last
                    : State.PendingSinceMs?.GetValueOrDefault(rule.Id, long.MinValue) ?? long.MinValue,
                RecoveringSinceMs = State.RecoveringSinceMs?.GetValueOrDefault(rule.Id, long.MinValue) ?? long.MinValue,
                Alone = State.Alone?.GetValueOrDefault(rule.Id),
                LastJudgedMs = JudgedThroughMs(rule),
                WatchedSinceMs = rule.Type != AlertRuleType.NoData ? long.MinValue
                    : old is { Rule.Type: AlertRuleType.NoData } && old.Rule.Kind == rule.Kind ? old.WatchedSinceMs
                    : State.WatchedSinceMs?.GetValueOrDefault(rule.Id, long.MinValue) is { } watched and not long.MinValue ? watched
                    : watchFromMs,
            };
            runtime.Rule = rule;
            switch (rule.Type)
            {
                case AlertRuleType.Threshold or AlertRuleType.RateOfChange:
                    if (rule.Type == AlertRuleType.RateOfChange && runtime != old)
                    {
                        runtime.Rate = old is { Rule: { Type: AlertRuleType.RateOfChange } was } && was.Kind == rule.Kind && Explicit(was).WindowSeconds == Explicit(rule).WindowSeconds
                            ? old.Rate
                            : new RateWindow((rule.WindowSeconds ?? AlertRule.DefaultWindowSeconds) * 1000L);
                    }

                    ref var vital = ref Track(rule.Kind!.Value);
                    vital.Rules = Appended(vital.Rules, runtime);
                    break;
                case AlertRuleType.EarlyWarning:
                    _earlyWarning = Appended(_earlyWarning, runtime);
                    break;
                case AlertRuleType.NoData:
                    _noData = Appended(_noData, runtime);
                    break;
                case AlertRuleType.Implausible:
                    _implausible = Appended(_implausible, runtime);
                    break;
            }
        }
    }

    /// <summary>
    /// The time of the latest reading judged of what <paramref name="rule"/> watches (as the state restores it), from
    /// which a new runtime counts the gap to the next: a recovery carried into an activation starts again across a gap
    /// that began before it, as it would have without the activation.
    /// </summary>
    private long JudgedThroughMs(AlertRule rule)
    {
        var judged = long.MinValue;
        foreach (ref readonly var vital in _vitals.AsSpan())
        {
            var watched = rule.Type == AlertRuleType.EarlyWarning ? EarlyWarningScore.IsParameter(vital.Kind) : vital.Kind == rule.Kind;
            if (watched)
            {
                judged = Math.Max(judged, vital.JudgedMs);
            }
        }

        return judged;
    }

    /// <summary>
    /// Whether <paramref name="rule"/> watches for what <paramref name="was"/> did: the same but for its priority, re-arm or
    /// escalation, a default left out and given (a rate's window of 900 s, a clear level equal to the level) being the same.
    /// </summary>
    private static bool SameCondition(AlertRule was, AlertRule rule) =>
        Explicit(was) with { Priority = rule.Priority, RearmSeconds = rule.RearmSeconds, EscalateAfterSeconds = rule.EscalateAfterSeconds } == Explicit(rule);

    private static AlertRule Explicit(AlertRule rule) => rule with
    {
        ClearLevel = rule.ClearLevel ?? rule.Level,
        WindowSeconds = rule.Type == AlertRuleType.RateOfChange ? rule.WindowSeconds ?? AlertRule.DefaultWindowSeconds : rule.WindowSeconds,
    };

    /// <summary>The entries of rules still in <paramref name="rules"/>; null when none is left.</summary>
    private static Dictionary<string, T>? WithRulesOf<T>(Dictionary<string, T>? byRule, Dictionary<string, AlertRule> rules)
    {
        foreach (var id in byRule?.Keys.Where(id => !rules.ContainsKey(id)).ToArray() ?? [])
        {
            byRule!.Remove(id);
        }

        return byRule?.Count > 0 ? byRule : null;
    }

    private static RuleRuntime[] Appended(RuleRuntime[]? runtimes, RuleRuntime runtime) => [.. runtimes ?? [], runtime];

    private int Find(VitalKind kind)
    {
        for (var i = 0; i < _vitals.Length; i++)
        {
            if (_vitals[i].Kind == kind)
            {
                return i;
            }
        }

        return -1;
    }

    /// <summary>The entry of <paramref name="kind"/>, made (nothing seen, nothing judged) when the patient had none.</summary>
    private ref VitalTrack Track(VitalKind kind)
    {
        var i = Find(kind);
        if (i < 0)
        {
            i = _vitals.Length;
            Array.Resize(ref _vitals, i + 1);
            _vitals[i] = new VitalTrack(kind);
        }

        return ref _vitals[i];
    }

    /// <summary>What the engine knows of one vital of the patient.</summary>
    private struct VitalTrack(VitalKind kind)
    {
        public readonly VitalKind Kind = kind;

        /// <summary>When a reading of it last arrived (no-data rules).</summary>
        public long LastSeenMs = long.MinValue;

        /// <summary>The latest fresh reading (NEWS2), on the server's clock (a reading stamped ahead, as of when it came).</summary>
        public long LatestMs = long.MinValue;

        public double LatestValue;

        /// <summary>The latest reading the rules judged: readings are judged in time order, each once (see AlertState.JudgedThroughMs).</summary>
        public long JudgedMs = long.MinValue;

        /// <summary>
        /// The time of the latest reading that came and was not judged (too old to be news, or late): the vital was not
        /// silent then, whatever the gap to the next judged one.
        /// </summary>
        public long UnjudgedLatestMs = long.MinValue;

        /// <summary>When a reading of it last came in a call, live (not read from the store at an activation).</summary>
        public long LastArrivalMs = long.MinValue;

        /// <summary>
        /// How long apart its readings last came in, live, when under what is news (0 until known): how long a device's
        /// next reading, which may break a lone one, may take to come.
        /// </summary>
        public long ArrivalGapMs;

        /// <summary>
        /// What the rules judged as counted by the server's clock: the latest judged reading's time, or when it was
        /// judged if that was earlier (a reading stamped ahead). Stands for <see cref="JudgedMs"/> while that is ahead of
        /// the clock; at activation, at most the activation's time (<see cref="ResumeJudging"/>).
        /// </summary>
        public long JudgedByClockMs = long.MinValue;

        /// <summary>The threshold and rate-of-change rules of this vital, or null when it has none.</summary>
        public RuleRuntime[]? Rules;
    }

    /// <summary>
    /// What the engine tracks per rule between readings; its sustain, recovery and watch are recorded in the state when it
    /// is written (<see cref="RecordJudged"/>), the rest is derived again from readings.
    /// </summary>
    private sealed class RuleRuntime(AlertRule rule)
    {
        public AlertRule Rule { get; set; } = rule;

        public long PendingSinceMs { get; set; } = long.MinValue;

        /// <summary>The time of the last reading at or past the level (see <see cref="AlertState.LastInAlarmMs"/>).</summary>
        public long LastInAlarmMs { get; set; } = long.MinValue;

        /// <summary>While its alert is open, since when its readings have been past the clear level (see <see cref="AlertState.RecoveringSinceMs"/>).</summary>
        public long RecoveringSinceMs { get; set; } = long.MinValue;

        /// <summary>The time of the latest reading judged by the rule: the gap to the next is how often its vital comes.</summary>
        public long LastJudgedMs { get; set; } = long.MinValue;

        /// <summary>
        /// A lone reading whose sustain (or recovery) no reading has broken yet: it completes by the clock (see
        /// <see cref="AlertState.Alone"/>); null otherwise.
        /// </summary>
        public AloneReading? Alone { get; set; }

        public long LastImplausibleMs { get; set; } = long.MinValue;

        /// <summary>A no-data rule's: since when it watches (its rules were set), for a vital never seen; <see cref="long.MinValue"/> when it does not.</summary>
        public long WatchedSinceMs { get; set; } = long.MinValue;

        public RateWindow? Rate { get; set; }
    }
}
