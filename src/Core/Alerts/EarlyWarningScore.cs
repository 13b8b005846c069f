using Telemetry.Core.Vitals;

namespace Telemetry.Core.Alerts;

/// <summary>
/// NEWS2 (Royal College of Physicians, 2017) from the vitals a wearable can measure: respiratory rate, SpO2 (scale 1),
/// systolic pressure, pulse and temperature. Air or oxygen and consciousness are not measured and score 0, so the score
/// is a lower bound of the bedside NEWS2.
/// </summary>
public static class EarlyWarningScore
{
    /// <summary>The vitals that contribute to the score.</summary>
    public static IReadOnlyList<VitalKind> Parameters { get; } =
        [VitalKind.RespiratoryRate, VitalKind.OxygenSaturation, VitalKind.SystolicPressure, VitalKind.HeartRate, VitalKind.BodyTemperature];

    public static bool IsParameter(VitalKind kind) =>
        kind is VitalKind.RespiratoryRate or VitalKind.OxygenSaturation or VitalKind.SystolicPressure or VitalKind.HeartRate or VitalKind.BodyTemperature;

    /// <summary>
    /// The points <paramref name="value"/> of <paramref name="kind"/> adds to the score (0 to 3); 0 for a vital that is not
    /// a parameter. The chart's bands are whole numbers (temperature's, tenths): a value between them is rounded as the
    /// chart's user would round it, half away from zero, before it is banded (a respiratory rate of 8.4 is 8, 3 points;
    /// a systolic 12.0 kPa, 90.0 mmHg, is 90).
    /// </summary>
    public static int Points(VitalKind kind, double value) => Banded(kind, kind == VitalKind.BodyTemperature
        ? Math.Round(value, 1, MidpointRounding.AwayFromZero)
        : Math.Round(value, MidpointRounding.AwayFromZero));

    private static int Banded(VitalKind kind, double value) => kind switch
    {
        VitalKind.RespiratoryRate => value switch
        {
            <= 8 => 3,
            < 12 => 1,
            < 21 => 0,
            < 25 => 2,
            _ => 3,
        },
        VitalKind.OxygenSaturation => value switch
        {
            < 92 => 3,
            < 94 => 2,
            < 96 => 1,
            _ => 0,
        },
        VitalKind.SystolicPressure => value switch
        {
            <= 90 => 3,
            <= 100 => 2,
            <= 110 => 1,
            < 220 => 0,
            _ => 3,
        },
        VitalKind.HeartRate => value switch
        {
            <= 40 => 3,
            <= 50 => 1,
            <= 90 => 0,
            <= 110 => 1,
            <= 130 => 2,
            _ => 3,
        },
        VitalKind.BodyTemperature => value switch
        {
            < 35.05 => 3,
            < 36.05 => 1,
            < 38.05 => 0,
            < 39.05 => 1,
            _ => 2,
        },
        _ => 0,
    };
}
