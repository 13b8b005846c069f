using Telemetry.Core.Vitals;

namespace Telemetry.Core.Tests.Vitals;

public sealed class VitalCatalogueTests
{
    public static TheoryData<VitalKind> Kinds => [.. Enum.GetValues<VitalKind>()];

    [Theory]
    [InlineData("heart_rate", VitalKind.HeartRate)]
    [InlineData("resting_heart_rate", VitalKind.RestingHeartRate)]
    [InlineData("spo2", VitalKind.OxygenSaturation)]
    [InlineData("body_temperature", VitalKind.BodyTemperature)]
    [InlineData("blood_glucose", VitalKind.BloodGlucose)]
    public void A_vital_is_found_by_its_catalogue_name(string name, VitalKind expected)
    {
        Assert.True(VitalCatalogue.TryFind(name, out var definition));
        Assert.Equal(expected, definition.Kind);
    }

    [Theory]
    [InlineData("hr", VitalKind.HeartRate)]
    [InlineData("pulse", VitalKind.HeartRate)]
    [InlineData("oxygen_saturation", VitalKind.OxygenSaturation)]
    [InlineData("2708-6", VitalKind.OxygenSaturation)]
    [InlineData("temperature", VitalKind.BodyTemperature)]
    [InlineData("systolic", VitalKind.SystolicPressure)]
    [InlineData("weight", VitalKind.BodyWeight)]
    [InlineData("sleep", VitalKind.SleepDuration)]
    public void A_vital_is_found_by_an_alias(string alias, VitalKind expected)
    {
        Assert.True(VitalCatalogue.TryFind(alias, out var definition));
        Assert.Equal(expected, definition.Kind);
    }

    [Theory]
    [InlineData("8867-4", VitalKind.HeartRate)]
    [InlineData("59408-5", VitalKind.OxygenSaturation)]
    [InlineData("8310-5", VitalKind.BodyTemperature)]
    [InlineData("8480-6", VitalKind.SystolicPressure)]
    [InlineData("8462-4", VitalKind.DiastolicPressure)]
    [InlineData("29463-7", VitalKind.BodyWeight)]
    public void A_vital_is_found_by_its_LOINC_code(string loinc, VitalKind expected)
    {
        Assert.True(VitalCatalogue.TryFind(loinc, out var definition));
        Assert.Equal(expected, definition.Kind);
    }

    [Fact]
    public void A_vital_is_found_by_UTF8_name_alias_or_code()
    {
        Assert.True(VitalCatalogue.TryFind("heart_rate"u8, out var byName));
        Assert.True(VitalCatalogue.TryFind("pulse"u8, out var byAlias));
        Assert.True(VitalCatalogue.TryFind("8310-5"u8, out var byCode));

        Assert.Equal(VitalKind.HeartRate, byName.Kind);
        Assert.Equal(VitalKind.HeartRate, byAlias.Kind);
        Assert.Equal(VitalKind.BodyTemperature, byCode.Kind);
    }

    [Theory]
    [InlineData("blood_pressure")]
    [InlineData("Heart_Rate")]
    [InlineData("heart")]
    [InlineData("heart_rate ")]
    [InlineData("8867")]
    [InlineData("")]
    public void Unknown_or_differently_cased_names_are_not_found(string name)
    {
        Assert.False(VitalCatalogue.TryFind(name, out _));
        Assert.False(VitalCatalogue.TryFind(System.Text.Encoding.UTF8.GetBytes(name), out _));
    }

    [Fact]
    public void Every_name_alias_and_code_finds_the_same_vital_as_string_and_as_UTF8()
    {
        foreach (var definition in VitalCatalogue.All)
        {
            foreach (var name in definition.Aliases.Append(definition.Name).Append(definition.Loinc))
            {
                Assert.True(VitalCatalogue.TryFind(name, out var fromString), name);
                Assert.True(VitalCatalogue.TryFind(System.Text.Encoding.UTF8.GetBytes(name), out var fromUtf8), name);
                Assert.Same(definition, fromString);
                Assert.Same(definition, fromUtf8);
            }
        }
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Every_vital_kind_has_exactly_one_definition(VitalKind kind)
    {
        var definition = Assert.Single(VitalCatalogue.All, d => d.Kind == kind);
        Assert.Same(definition, VitalCatalogue.Get(kind));
    }

    [Theory]
    [InlineData((byte)0)]
    [InlineData((byte)12)]
    [InlineData((byte)255)]
    public void Getting_a_kind_outside_the_catalogue_throws(byte kind) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => VitalCatalogue.Get((VitalKind)kind));

    [Theory]
    [MemberData(nameof(Kinds))]
    public void The_canonical_unit_is_the_first_unit_and_converts_with_scale_one(VitalKind kind)
    {
        var definition = VitalCatalogue.Get(kind);
        var first = definition.Units[0];

        Assert.Equal(definition.Unit, first.Unit);
        Assert.Equal(1, first.Scale);
        Assert.Equal(0, first.Offset);
        Assert.Same(first, definition.FindUnit(definition.Unit.AsSpan()));
        Assert.Equal(72.5, first.ToCanonical(72.5));
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void An_empty_unit_means_the_canonical_unit(VitalKind kind)
    {
        var definition = VitalCatalogue.Get(kind);

        Assert.Same(definition.Units[0], definition.FindUnit(ReadOnlySpan<char>.Empty));
        Assert.Same(definition.Units[0], definition.FindUnit(ReadOnlySpan<byte>.Empty));
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void The_plausible_range_is_not_empty(VitalKind kind)
    {
        var definition = VitalCatalogue.Get(kind);

        Assert.True(definition.PlausibleMin < definition.PlausibleMax);
        Assert.True(definition.IsPlausible((definition.PlausibleMin + definition.PlausibleMax) / 2));
    }
}
