using Orleans.Concurrency;
using Telemetry.Core.Alerts;
using Telemetry.Core.Readings;
using Telemetry.Core.Rollups;
using Telemetry.Core.Vitals;

namespace Telemetry.Core.Grains;

/// <summary>A patient's live picture: per-vital windows, rollups as windows close, the latest values. Keyed by patient id.</summary>
[Alias("telemetry.patient")]
public interface IPatientGrain : IGrainWithStringKey
{
    /// <summary>
    /// Folds readings that are already committed to the raw store into the patient's windows. Returns the minutes
    /// whose windows were taken from a raw store that shows a commit only a moment after answering it (those of late
    /// readings, closed windows or before the rebuilt days; those an activation read part of; closed windows over
    /// minutes so read): they are to be settled later (<see cref="SettleAsync"/>). Empty with a store that shows a
    /// commit at once. Made for every patient of every commit, so a call that completes at once allocates no task on
    /// either side (a <see cref="ValueTask{TResult}"/>), and its answer is not copied (<see cref="Immutable{T}"/>).
    /// </summary>
    [Alias("apply")]
    ValueTask<Immutable<CommittedMinute[]>> ApplyAsync(PatientReadings readings);

    /// <summary>
    /// Recomputes from the raw store the windows over <paramref name="minutes"/>, whose readings are committed but may
    /// never have reached the grain (its call lost in a crash, or failed). Safe to call whether or not they did. Returns
    /// true when the grain rebuilt its days from the raw store to do so: a store that shows a commit a while after
    /// answering it may not have shown that rebuild the commits the grain had applied just before, whose minutes are
    /// then to be settled (<see cref="SettleRebuiltAsync"/>).
    /// </summary>
    [Alias("recompute")]
    Task<bool> RecomputeAsync(CommittedMinute[] minutes);

    /// <summary>
    /// Recomputes from the raw store the closed windows over <paramref name="minutes"/>, the late minutes an earlier
    /// call recomputed before the store may have shown all of their readings (see <see cref="ApplyAsync"/>). Returns the
    /// minutes to be settled again, later: of those it settled, each whose minute, hour or day window it read from the
    /// store while that window held readings of a commit the grain applied less than the store's
    /// <see cref="Storage.IRawSeriesStore.ReadableAfter"/> ago (one minute per hour or day window), which a store that
    /// cannot be asked to show what it answered (InfluxDB) may not have shown. Empty with a store that shows a commit
    /// at once.
    /// </summary>
    [Alias("settle")]
    Task<CommittedMinute[]> SettleAsync(CommittedMinute[] minutes);

    /// <summary>
    /// Takes from the raw store the windows over <paramref name="minutes"/>, which hold readings of commits applied
    /// before its last rebuild that a store showing commits late may not have shown to it (the server restarted just
    /// after them, a failed call started the grain over, a repair rebuilt it): the closed windows now, those still open
    /// as they close. Returns what <see cref="SettleAsync"/> does.
    /// </summary>
    [Alias("settle-rebuilt")]
    Task<CommittedMinute[]> SettleRebuiltAsync(CommittedMinute[] minutes);

    /// <summary>The latest value of every vital the patient has, with its still-open minute.</summary>
    [Alias("live")]
    [AlwaysInterleave]
    Task<LiveSnapshot> GetLiveAsync();

    /// <summary>The still-open window of <paramref name="kind"/> at <paramref name="resolution"/>, if the patient has one.</summary>
    [Alias("open-window")]
    [AlwaysInterleave]
    Task<RollupWindow?> GetOpenWindowAsync(VitalKind kind, Resolution resolution);

    /// <summary>
    /// The windows of <paramref name="kind"/> at <paramref name="resolution"/> a trend read may not find in the rollup
    /// store yet: those closed but not yet written (the grain writes them after the alert state), those written to a
    /// store that shows a write a while after answering it and may not show yet, and the one still open. Oldest first.
    /// </summary>
    [Alias("recent-windows")]
    [AlwaysInterleave]
    Task<RollupWindow[]> GetRecentWindowsAsync(VitalKind kind, Resolution resolution);

    /// <summary>The patient's alert rules.</summary>
    [Alias("alert-rules")]
    [AlwaysInterleave]
    Task<AlertRuleSet> GetAlertRulesAsync();

    /// <summary>Replaces the patient's alert rules (already validated); open alerts of rules that are gone clear.</summary>
    [Alias("set-alert-rules")]
    Task<AlertRuleSet> SetAlertRulesAsync(AlertRuleSet rules);

    /// <summary>The patient's open alerts.</summary>
    [Alias("open-alerts")]
    [AlwaysInterleave]
    Task<Alert[]> GetOpenAlertsAsync();

    /// <summary>Acknowledges an open alert; null when the patient has no such open alert.</summary>
    [Alias("ack")]
    Task<Alert?> AcknowledgeAsync(string alertId, string by);

    /// <summary>
    /// Snoozes an open alert for <paramref name="duration"/>, or refuses a duration longer than its priority allows
    /// (<see cref="AlertSnooze.Longest"/>); an empty result when the patient has no such open alert.
    /// </summary>
    [Alias("snooze-refusing")]
    Task<SnoozeResult> SnoozeAsync(string alertId, TimeSpan duration, string by);

    /// <summary>Activates the grain, so its alert timers (no-data, escalation, snooze) run again after a restart.</summary>
    [Alias("wake")]
    Task WakeAsync();
}
