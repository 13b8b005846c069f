using Telemetry.Core.Readings;
using Telemetry.Core.Vitals;

namespace Telemetry.Core.Tests.Vitals;

/// <summary>One reading sent twice, the second time by another app in another unit, rounded as that app shows it.</summary>
public sealed class SameReadingTests
{
    [Theory]
    [InlineData(VitalKind.BodyWeight, "kg", 70.0, "lb", 154.3, true)]
    [InlineData(VitalKind.BodyWeight, "kg", 70.0, "lb", 154.0, false)]
    [InlineData(VitalKind.BodyTemperature, "Cel", 37.3, "[degF]", 99.1, true)]
    [InlineData(VitalKind.BodyTemperature, "Cel", 38.0, "[degF]", 100.4, true)]
    [InlineData(VitalKind.BodyTemperature, "Cel", 37.3, "[degF]", 99.5, false)]
    [InlineData(VitalKind.BloodGlucose, "mg/dL", 110, "mmol/L", 6.1, true)]
    [InlineData(VitalKind.BloodGlucose, "mg/dL", 112, "mmol/L", 6.2, true)]
    [InlineData(VitalKind.BloodGlucose, "mg/dL", 110, "mmol/L", 6.3, false)]
    [InlineData(VitalKind.SystolicPressure, "mm[Hg]", 121, "kPa", 16.1, true)]
    [InlineData(VitalKind.SystolicPressure, "mm[Hg]", 120, "kPa", 16.3, false)]
    [InlineData(VitalKind.OxygenSaturation, "%", 97, "1", 0.97, true)]
    [InlineData(VitalKind.SleepDuration, "h", 7.5, "min", 450, true)]
    [InlineData(VitalKind.SleepDuration, "h", 7.5, "min", 452, false)]
    [InlineData(VitalKind.HeartRate, "/min", 72, "bpm", 72.4, true)]
    [InlineData(VitalKind.HeartRate, "/min", 72, "bpm", 73, false)]
    [InlineData(VitalKind.Steps, "{steps}", 1000, "count", 1001, false)]

    // A correction by one step as the vital is shown, in the same unit, is never taken for the same reading.
    [InlineData(VitalKind.BodyTemperature, "Cel", 37.2, "Cel", 37.3, false)]
    [InlineData(VitalKind.BodyTemperature, "Cel", 37.3, "Cel", 37.4, false)]
    [InlineData(VitalKind.SystolicPressure, "mm[Hg]", 120, "mm[Hg]", 121, false)]
    [InlineData(VitalKind.BodyWeight, "kg", 70.0, "kg", 70.1, false)]
    [InlineData(VitalKind.BodyWeight, "kg", 70.1, "kg", 70.2, false)]
    [InlineData(VitalKind.BloodGlucose, "mg/dL", 110, "mg/dL", 111, false)]
    [InlineData(VitalKind.SleepDuration, "h", 7.5, "min", 451, false)]
    public void A_value_sent_again_in_another_unit_and_rounded_is_the_same_reading_and_more_is_a_conflict(
        VitalKind kind, string storedUnit, double storedValue, string sentUnit, double sentValue, bool same)
    {
        var definition = VitalCatalogue.Get(kind);
        var stored = definition.FindUnit(storedUnit.AsSpan())!.ToCanonical(storedValue);
        var sent = definition.FindUnit(sentUnit.AsSpan())!.ToCanonical(sentValue);

        Assert.Equal(same, BatchOutcome.SameValue(kind, stored, sent));
        Assert.Equal(same, BatchOutcome.SameValue(kind, sent, stored));
    }
}
