using Telemetry.Core.Vitals;

namespace Telemetry.Core.Tests.Vitals;

public sealed class UnitConversionTests
{
    private const double Tolerance = 1e-9;

    [Theory]
    [InlineData("[degF]", 98.6, 37.0)]
    [InlineData("degF", 98.6, 37.0)]
    [InlineData("[degF]", 32.0, 0.0)]
    [InlineData("degF", 212.0, 100.0)]
    [InlineData("K", 310.15, 37.0)]
    [InlineData("degC", 36.6, 36.6)]
    [InlineData("Cel", 38.2, 38.2)]
    public void Body_temperature_converts_to_degrees_Celsius(string unit, double value, double celsius) =>
        Assert.Equal(celsius, Convert(VitalKind.BodyTemperature, unit, value), Tolerance);

    [Theory]
    [InlineData("lb", 100.0, 45.359237)]
    [InlineData("[lb_av]", 154.0, 69.85322498)]
    [InlineData("g", 70_500.0, 70.5)]
    [InlineData("kg", 70.5, 70.5)]
    public void Body_weight_converts_to_kilograms(string unit, double value, double kilograms) =>
        Assert.Equal(kilograms, Convert(VitalKind.BodyWeight, unit, value), 1e-8);

    [Theory]
    [InlineData("mmol/L", 5.5, 99.085745)]
    [InlineData("mmol/L", 1.0, 18.01559)]
    [InlineData("mg/dL", 99.0, 99.0)]
    public void Blood_glucose_converts_to_milligrams_per_decilitre(string unit, double value, double mgPerDl) =>
        Assert.Equal(mgPerDl, Convert(VitalKind.BloodGlucose, unit, value), Tolerance);

    [Theory]
    [InlineData(VitalKind.SystolicPressure, "kPa", 16.0, 120.009852128)]
    [InlineData(VitalKind.DiastolicPressure, "kPa", 10.0, 75.00615758)]
    [InlineData(VitalKind.SystolicPressure, "mmHg", 120.0, 120.0)]
    public void Blood_pressure_converts_to_millimetres_of_mercury(VitalKind kind, string unit, double value, double mmHg) =>
        Assert.Equal(mmHg, Convert(kind, unit, value), Tolerance);

    [Theory]
    [InlineData("1", 0.97, 97.0)]
    [InlineData("/1", 0.955, 95.5)]
    [InlineData("%", 98.0, 98.0)]
    public void Oxygen_saturation_as_a_fraction_converts_to_percent(string unit, double value, double percent) =>
        Assert.Equal(percent, Convert(VitalKind.OxygenSaturation, unit, value), Tolerance);

    [Theory]
    [InlineData("min", 90.0, 1.5)]
    [InlineData("s", 27_000.0, 7.5)]
    public void Sleep_duration_converts_to_hours(string unit, double value, double hours) =>
        Assert.Equal(hours, Convert(VitalKind.SleepDuration, unit, value), Tolerance);

    [Theory]
    [InlineData(VitalKind.HeartRate, "bpm")]
    [InlineData(VitalKind.HeartRate, "beats/min")]
    [InlineData(VitalKind.RespiratoryRate, "{breaths}/min")]
    [InlineData(VitalKind.Steps, "count")]
    public void Synonyms_of_the_canonical_unit_keep_the_value(VitalKind kind, string unit) =>
        Assert.Equal(72.0, Convert(kind, unit, 72.0));

    [Theory]
    [InlineData(VitalKind.BloodGlucose, "mg")]
    [InlineData(VitalKind.HeartRate, "%")]
    [InlineData(VitalKind.BodyWeight, "stone")]
    [InlineData(VitalKind.BodyTemperature, "°c")]
    public void A_unit_the_vital_does_not_list_is_not_found(VitalKind kind, string unit)
    {
        var definition = VitalCatalogue.Get(kind);

        Assert.Null(definition.FindUnit(unit.AsSpan()));
        Assert.Null(definition.FindUnit(System.Text.Encoding.UTF8.GetBytes(unit)));
    }

    [Theory]
    [InlineData(VitalKind.BloodGlucose, "mg/dl", 99.0, 99.0)]
    [InlineData(VitalKind.BloodGlucose, "MMOL/L", 1.0, 18.01559)]
    [InlineData(VitalKind.HeartRate, "BPM", 72.0, 72.0)]
    [InlineData(VitalKind.SystolicPressure, "mmhg", 120.0, 120.0)]
    [InlineData(VitalKind.SystolicPressure, "KPA", 10.0, 75.00615758)]
    [InlineData(VitalKind.BodyTemperature, "cel", 37.0, 37.0)]
    [InlineData(VitalKind.BodyTemperature, "°C", 37.0, 37.0)]
    [InlineData(VitalKind.BodyTemperature, "°F", 98.6, 37.0)]
    [InlineData(VitalKind.BodyWeight, "lbs", 100.0, 45.359237)]
    [InlineData(VitalKind.BodyWeight, "KG", 70.5, 70.5)]
    public void A_unit_in_another_case_or_its_everyday_spelling_converts_as_the_unit(VitalKind kind, string unit, double value, double canonical)
    {
        var definition = VitalCatalogue.Get(kind);

        Assert.Equal(canonical, Convert(kind, unit, value), 1e-8);
        Assert.Same(definition.FindUnit(unit.AsSpan()), definition.FindUnit(System.Text.Encoding.UTF8.GetBytes(unit)));
    }

    [Fact]
    public void A_unit_given_as_UTF8_finds_the_same_conversion_as_the_string()
    {
        var temperature = VitalCatalogue.Get(VitalKind.BodyTemperature);

        var fromUtf8 = temperature.FindUnit("[degF]"u8);

        Assert.NotNull(fromUtf8);
        Assert.Same(temperature.FindUnit("[degF]".AsSpan()), fromUtf8);
        Assert.Equal(37.0, fromUtf8.ToCanonical(98.6), Tolerance);
    }

    private static double Convert(VitalKind kind, string unit, double value)
    {
        var conversion = VitalCatalogue.Get(kind).FindUnit(unit.AsSpan());
        Assert.NotNull(conversion);
        return conversion.ToCanonical(value);
    }
}
