using Telemetry.Core.Vitals;

namespace Telemetry.Core.Alerts;

/// <summary>Named starting points for a patient's rules; a clinician applies one and tunes it.</summary>
public static class AlertRuleTemplates
{
    /// <summary>An adult on a ward or at home: the limits a general adult monitor ships with, NEWS2, and the technical alerts.</summary>
    public const string AdultDefault = "adult-default";

    /// <summary>A person with diabetes on a CGM: low, urgent low, high, falling fast, and sensor silence.</summary>
    public const string Glucose = "glucose";

    private static readonly Dictionary<string, AlertRuleSet> Templates = new(StringComparer.Ordinal)
    {
        [AdultDefault] = new AlertRuleSet(
        [
            new("hr-high", AlertRuleType.Threshold, AlertPriority.Medium, VitalKind.HeartRate, AlertDirection.Above, 120, 110, SustainSeconds: 60, RearmSeconds: 300),
            new("hr-low", AlertRuleType.Threshold, AlertPriority.High, VitalKind.HeartRate, AlertDirection.Below, 40, 45, SustainSeconds: 30, RearmSeconds: 300, EscalateAfterSeconds: 300),
            new("spo2-low", AlertRuleType.Threshold, AlertPriority.High, VitalKind.OxygenSaturation, AlertDirection.Below, 90, 92, SustainSeconds: 60, RearmSeconds: 300, EscalateAfterSeconds: 300),

            // Critical tiers: an episode acknowledged or snoozed at the first level is silenced for that rule alone, so a
            // patient who worsens well past it (SpO2 from 89 to 84, a pulse from 125 to 145) raises an alert of its own.
            new("spo2-critical", AlertRuleType.Threshold, AlertPriority.High, VitalKind.OxygenSaturation, AlertDirection.Below, 85, 88, SustainSeconds: 30, RearmSeconds: 120, EscalateAfterSeconds: 120),
            new("hr-very-high", AlertRuleType.Threshold, AlertPriority.High, VitalKind.HeartRate, AlertDirection.Above, 140, 130, SustainSeconds: 60, RearmSeconds: 300, EscalateAfterSeconds: 300),
            new("rr-high", AlertRuleType.Threshold, AlertPriority.Medium, VitalKind.RespiratoryRate, AlertDirection.Above, 25, 22, SustainSeconds: 120, RearmSeconds: 300),

            // NEWS2 scores a respiratory rate of 8 or less, and a temperature of 35.0 °C or less, 3 points alone: a single
            // red score asks for an urgent response even while the total stays under the news2 levels.
            new("rr-low", AlertRuleType.Threshold, AlertPriority.High, VitalKind.RespiratoryRate, AlertDirection.Below, 8, 10, SustainSeconds: 60, RearmSeconds: 300, EscalateAfterSeconds: 300),
            new("temp-high", AlertRuleType.Threshold, AlertPriority.Medium, VitalKind.BodyTemperature, AlertDirection.Above, 38.5, 38.0, RearmSeconds: 600),
            new("temp-low", AlertRuleType.Threshold, AlertPriority.Medium, VitalKind.BodyTemperature, AlertDirection.Below, 35.0, 35.5, RearmSeconds: 600),
            new("sbp-high", AlertRuleType.Threshold, AlertPriority.Medium, VitalKind.SystolicPressure, AlertDirection.Above, 180, 170, RearmSeconds: 600),
            // As glucose-urgent-low: one cuff reading past 95 clears it, and a low one five minutes later raises again.
            new("sbp-low", AlertRuleType.Threshold, AlertPriority.High, VitalKind.SystolicPressure, AlertDirection.Below, 90, 95, RearmSeconds: 300, EscalateAfterSeconds: 300),
            // Cleared once the score is under the clear level (2 or less for medium, 4 or less for high), so one noisy
            // reading that moves a vital by a band neither clears an episode nor, re-armed for long, holds back the next.
            new("news2-medium", AlertRuleType.EarlyWarning, AlertPriority.Medium, Direction: AlertDirection.Above, Level: 5, ClearLevel: 3, RearmSeconds: 300),
            new("news2-high", AlertRuleType.EarlyWarning, AlertPriority.High, Direction: AlertDirection.Above, Level: 7, ClearLevel: 5, RearmSeconds: 300, EscalateAfterSeconds: 300),
            // The heart rate, which every watch, ring and patch sends: watching any vital, a phone still uploading its
            // own steps would hide the monitor that stopped.
            new("no-data", AlertRuleType.NoData, AlertPriority.Low, VitalKind.HeartRate, SilenceSeconds: 900),
            new("implausible", AlertRuleType.Implausible, AlertPriority.Low, RearmSeconds: 300),
        ], AdultDefault),
        [Glucose] = new AlertRuleSet(
        [
            // Raised on the first reading (no sustain), so cleared by the first past 60 too: re-armed after a CGM's
            // five-minute interval, so that one reading of 61 between lows holds the next urgent alert back no longer.
            new("glucose-urgent-low", AlertRuleType.Threshold, AlertPriority.High, VitalKind.BloodGlucose, AlertDirection.Below, 54, 60, RearmSeconds: 300, EscalateAfterSeconds: 600),
            new("glucose-low", AlertRuleType.Threshold, AlertPriority.Medium, VitalKind.BloodGlucose, AlertDirection.Below, 70, 80, SustainSeconds: 300, RearmSeconds: 900),
            new("glucose-high", AlertRuleType.Threshold, AlertPriority.Low, VitalKind.BloodGlucose, AlertDirection.Above, 250, 230, SustainSeconds: 900, RearmSeconds: 3600),
            new("glucose-falling-fast", AlertRuleType.RateOfChange, AlertPriority.Medium, VitalKind.BloodGlucose, AlertDirection.Falling, 2, 1, RearmSeconds: 900, WindowSeconds: 900),
            new("glucose-no-data", AlertRuleType.NoData, AlertPriority.Medium, VitalKind.BloodGlucose, SilenceSeconds: 1200),
            new("implausible", AlertRuleType.Implausible, AlertPriority.Low, RearmSeconds: 300),
        ], Glucose),
    };

    public static IReadOnlyCollection<string> Names => Templates.Keys;

    public static bool TryGet(string name, out AlertRuleSet rules) => Templates.TryGetValue(name, out rules!);
}
