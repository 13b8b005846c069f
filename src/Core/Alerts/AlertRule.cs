using Telemetry.Core.Vitals;

namespace Telemetry.Core.Alerts;

/// <summary>
/// One alert rule of a patient. Which fields apply depends on <see cref="Type"/>; <see cref="AlertRuleValidation"/> says
/// what each type needs. Durations are in seconds.
/// </summary>
/// <param name="Id">Names the rule within its set; an alert carries it.</param>
/// <param name="Type">What the rule watches.</param>
/// <param name="Priority">How urgent its alerts are; a technical rule's is at most medium.</param>
/// <param name="Kind">The vital watched (not used by early warning; optional for no-data and implausible).</param>
/// <param name="Direction">Above or below for a threshold, rising or falling for a rate; early warning is above.</param>
/// <param name="Level">The level that raises the alert: a value, a rate per minute, or a score.</param>
/// <param name="ClearLevel">The level the value must pass back over before the alert clears (hysteresis); the raise level when absent.</param>
/// <param name="SustainSeconds">How long the condition must hold, in reading time, before the alert is raised; and how long its recovery must, before it clears.</param>
/// <param name="RearmSeconds">After an episode clears, how long before the rule may raise a new one.</param>
/// <param name="WindowSeconds">The trailing window a rate of change is measured over.</param>
/// <param name="SilenceSeconds">How long without readings raises a no-data alert.</param>
/// <param name="EscalateAfterSeconds">When set, an alert not acknowledged this long after it became active escalates (and again each time this passes).</param>
[GenerateSerializer, Immutable]
public sealed record AlertRule(
    string Id,
    AlertRuleType Type,
    AlertPriority Priority,
    VitalKind? Kind = null,
    AlertDirection? Direction = null,
    double? Level = null,
    double? ClearLevel = null,
    int SustainSeconds = 0,
    int RearmSeconds = 0,
    int? WindowSeconds = null,
    int? SilenceSeconds = null,
    int? EscalateAfterSeconds = null)
{
    /// <summary>The trailing window of a rate of change when the rule does not name one.</summary>
    public const int DefaultWindowSeconds = 900;

    public AlertCategory Category => Type is AlertRuleType.NoData or AlertRuleType.Implausible ? AlertCategory.Technical : AlertCategory.Clinical;
}
