using Telemetry.Core.Alerts;
using Telemetry.Core.Readings;
using Telemetry.Core.Vitals;

namespace Telemetry.Grains.Alerts;

/// <summary>
/// Runs a rule set over stored readings as if it had been switched on at the start: the same engine, with the clock at
/// each reading's time, so sustain, hysteresis, re-arm and silence behave as they would have live.
/// </summary>
public static class AlertReplay
{
    /// <summary>The vitals whose readings <paramref name="rules"/> need (all of them when a rule watches any vital).</summary>
    public static IReadOnlyList<VitalKind> KindsNeeded(AlertRuleSet rules)
    {
        var kinds = new HashSet<VitalKind>();
        foreach (var rule in rules.Rules)
        {
            switch (rule.Type)
            {
                case AlertRuleType.EarlyWarning:
                    kinds.UnionWith(EarlyWarningScore.Parameters);
                    break;
                case AlertRuleType.Threshold or AlertRuleType.RateOfChange:
                    kinds.Add(rule.Kind!.Value);
                    break;
                default:
                    if (rule.Kind is { } kind)
                    {
                        kinds.Add(kind);
                    }
                    else
                    {
                        return VitalCatalogue.All.Select(v => v.Kind).ToList();
                    }

                    break;
            }
        }

        return [.. kinds.Order()];
    }

    /// <summary>The alerts the rules would have raised over <paramref name="readings"/> (any order), as each stood at <paramref name="toMs"/>.</summary>
    public static IReadOnlyList<Alert> Run(string patientId, AlertRuleSet rules, IEnumerable<VitalReading> readings, long fromMs, long toMs)
    {
        var engine = new AlertEngine(patientId, new AlertState());
        // Whether monitoring had begun before the range's first reading is not known: silences count from readings only.
        engine.SetRules(rules, fromMs, startWatching: false);
        // Each moment is judged as of itself: a score due once its moment's readings are in, before the clock moves on
        // (the clock runs once a moment: a tick judges what is due, and would score a moment's first reading alone).
        var momentMs = long.MinValue;
        foreach (var reading in readings.OrderBy(r => r.TimestampMs))
        {
            if (reading.TimestampMs != momentMs)
            {
                engine.EndOfReadings(momentMs);
                momentMs = reading.TimestampMs;
                TickThrough(engine, momentMs);
            }

            engine.Observe(reading, reading.TimestampMs);
        }

        engine.EndOfReadings(momentMs);
        TickThrough(engine, toMs);
        var latest = new Dictionary<string, Alert>(StringComparer.Ordinal);
        foreach (var item in engine.State.Outbox)
        {
            latest[item.Alert.AlertId] = item.Alert;
        }

        return [.. latest.Values.OrderBy(alert => alert.TriggeredAt)];
    }

    /// <summary>
    /// Runs the clock to <paramref name="nowMs"/>, stopping at each time something fell due on the way (a silence, an
    /// escalation, a spot check's sustain), so that what the clock raises is raised when it would have been live.
    /// </summary>
    private static void TickThrough(AlertEngine engine, long nowMs)
    {
        for (var dueMs = engine.NextDueMs; dueMs is { } due && due < nowMs; dueMs = engine.NextDueMs is { } next && next > due ? next : null)
        {
            engine.Tick(due);
        }

        engine.Tick(nowMs);
    }
}
