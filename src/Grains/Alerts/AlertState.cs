using Telemetry.Core.Alerts;
using Telemetry.Core.Vitals;

namespace Telemetry.Grains.Alerts;

/// <summary>
/// A patient's persisted alert state: the rules, the open episodes (with their snoozes and escalation times), the re-arm
/// and snooze marks per rule, and the events not yet handed to the alert store (the outbox).
/// </summary>
[GenerateSerializer]
public sealed class AlertState : IAlertOutbox
{
    [Id(0)]
    public AlertRuleSet Rules { get; set; } = AlertRuleSet.Empty;

    [Id(1)]
    public List<Alert> Open { get; set; } = [];

    // The maps below are null until they hold something: most patients' alerts never clear or snooze, and the
    // state is kept for every active patient.

    /// <summary>Per rule, when its last episode cleared: the re-arm guard counts from here.</summary>
    [Id(2)]
    public Dictionary<string, long>? ClearedAtMs { get; set; }

    /// <summary>Per rule, until when it is snoozed: a new episode of the rule in that time starts snoozed.</summary>
    [Id(3)]
    public Dictionary<string, long>? SnoozedUntilMs { get; set; }

    [Id(4)]
    public long LastEpisode { get; set; }

    [Id(5)]
    public long LastEventSeq { get; set; }

    /// <summary>Events persisted with this state but not yet known to be in the alert store.</summary>
    [Id(6)]
    public List<AlertEvent> Outbox { get; set; } = [];

    [Id(7)]
    public DateTimeOffset? RulesUpdatedAt { get; set; }

    /// <summary>
    /// Per vital, the time of the latest reading the rules had judged when this state was last written. Every reading
    /// that raised or cleared an alert is at or before it; the readings after it that are still news are judged when
    /// the grain activates (a crash, or a failed call, may have kept them from the rules) and when it is repaired.
    /// </summary>
    [Id(8)]
    public Dictionary<VitalKind, long>? JudgedThroughMs { get; set; }

    /// <summary>
    /// Per rule, since when (reading time) its condition had held without raising yet (a sustain under way) when this
    /// state was last written: an activation carries the sustain on from there instead of starting it again.
    /// </summary>
    [Id(9)]
    public Dictionary<string, long>? PendingSinceMs { get; set; }

    /// <summary>
    /// Per rule with a sustain under way, the time of its last reading at or past the level (see
    /// <see cref="PendingSinceMs"/>): a spell between the levels is measured from it. Absent (a state written before it
    /// was kept), the sustain's start stands in.
    /// </summary>
    [Id(10)]
    public Dictionary<string, long>? LastInAlarmMs { get; set; }

    /// <summary>
    /// Per rule whose open alert is recovering, since when (reading time) its readings had been past the clear level when
    /// this state was last written: the alert clears once that has lasted the rule's sustain.
    /// </summary>
    [Id(11)]
    public Dictionary<string, long>? RecoveringSinceMs { get; set; }

    /// <summary>Per rule in <see cref="SnoozedUntilMs"/>, who snoozed it: a new episode that starts snoozed says so.</summary>
    [Id(12)]
    public Dictionary<string, string>? SnoozedByRule { get; set; }

    /// <summary>
    /// Per no-data rule, since when it has watched for data (when it was set, or last changed): a vital not seen since is
    /// silent since then, whatever activations came between.
    /// </summary>
    [Id(13)]
    public Dictionary<string, long>? WatchedSinceMs { get; set; }

    /// <summary>
    /// Per threshold rule whose sustain or recovery under way began with a reading that came alone (its vital's first, or
    /// its first after a silence of more than 15 minutes: a spot check) and has been broken by no reading since: unless
    /// one comes first, the sustain completes by the clock (AlertEngine.AloneDueMs), raising (as triggered the sustain
    /// after the reading), or clearing.
    /// </summary>
    [Id(14)]
    public Dictionary<string, AloneReading>? Alone { get; set; }

    IReadOnlyList<AlertEvent> IAlertOutbox.PendingEvents => Outbox;
}
