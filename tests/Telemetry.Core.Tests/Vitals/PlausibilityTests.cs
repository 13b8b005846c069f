using Telemetry.Core.Vitals;

namespace Telemetry.Core.Tests.Vitals;

public sealed class PlausibilityTests
{
    [Theory]
    [InlineData(VitalKind.HeartRate, 20.0)]
    [InlineData(VitalKind.HeartRate, 300.0)]
    [InlineData(VitalKind.HeartRate, 72.0)]
    [InlineData(VitalKind.OxygenSaturation, 100.0)]
    [InlineData(VitalKind.BodyTemperature, 25.0)]
    [InlineData(VitalKind.Steps, 0.0)]
    [InlineData(VitalKind.SleepDuration, 24.0)]
    public void Values_within_the_bounds_inclusive_are_plausible(VitalKind kind, double value) =>
        Assert.True(VitalCatalogue.Get(kind).IsPlausible(value));

    [Theory]
    [InlineData(VitalKind.HeartRate, 19.9)]
    [InlineData(VitalKind.HeartRate, 300.1)]
    [InlineData(VitalKind.OxygenSaturation, 100.5)]
    [InlineData(VitalKind.OxygenSaturation, 0.97)]
    [InlineData(VitalKind.BodyTemperature, 98.6)]
    [InlineData(VitalKind.Steps, -1.0)]
    [InlineData(VitalKind.BodyWeight, 0.0)]
    [InlineData(VitalKind.SleepDuration, 24.5)]
    public void Values_outside_the_bounds_are_implausible(VitalKind kind, double value) =>
        Assert.False(VitalCatalogue.Get(kind).IsPlausible(value));

    [Theory]
    [InlineData(double.NaN)]
    [InlineData(double.PositiveInfinity)]
    [InlineData(double.NegativeInfinity)]
    public void Non_finite_values_are_implausible(double value) =>
        Assert.False(VitalCatalogue.Get(VitalKind.Steps).IsPlausible(value));
}
