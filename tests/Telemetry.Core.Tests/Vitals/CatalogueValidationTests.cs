using Telemetry.Core.Vitals;

namespace Telemetry.Core.Tests.Vitals;

public sealed class CatalogueValidationTests
{
    [Fact]
    public void The_catalogue_passes_its_start_up_check()
    {
        var exception = Record.Exception(VitalCatalogue.Validate);

        Assert.Null(exception);
    }

    [Fact]
    public void Every_loinc_code_in_the_catalogue_has_a_correct_check_digit()
    {
        var codes = VitalCatalogue.All.SelectMany(v => v.Aliases.Where(a => char.IsAsciiDigit(a[0])).Prepend(v.Loinc)).Append(VitalCatalogue.BloodPressure.Loinc);

        Assert.All(codes, code => Assert.True(Loinc.IsValid(code), code));
    }

    [Theory]
    [InlineData("8867-4", true)]
    [InlineData("8310-5", true)]
    [InlineData("59408-5", true)]
    [InlineData("85354-9", true)]
    [InlineData("2339-0", true)]
    [InlineData("8867-5", false)]
    [InlineData("8310-4", false)]
    [InlineData("8867", false)]
    [InlineData("-4", false)]
    [InlineData("88a7-4", false)]
    [InlineData("8867-44", false)]
    [InlineData("", false)]
    public void Loinc_check_digits_are_verified(string code, bool valid)
    {
        Assert.Equal(valid, Loinc.IsValid(code));
    }
}
