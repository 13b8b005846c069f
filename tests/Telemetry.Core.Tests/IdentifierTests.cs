namespace Telemetry.Core.Tests;

public sealed class IdentifierTests
{
    [Theory]
    [InlineData("a")]
    [InlineData("watch-42")]
    [InlineData("patient_0001")]
    [InlineData("urn:dev:mac:0024befffe804ff1")]
    [InlineData("ward.3.bed.7")]
    [InlineData("ABCxyz0123456789")]
    public void Letters_digits_and_dash_underscore_colon_dot_are_valid(string id) =>
        Assert.True(Identifier.IsValid(id));

    [Theory]
    [InlineData("")]
    [InlineData("watch/42")]
    [InlineData("watch+")]
    [InlineData("watch#")]
    [InlineData("watch 42")]
    [InlineData("patient%20")]
    [InlineData("café")]
    [InlineData("watch\n")]
    [InlineData(".")]
    [InlineData("..")]
    public void Ids_unsafe_in_topics_urls_or_logs_are_invalid(string id) =>
        Assert.False(Identifier.IsValid(id));

    [Theory]
    [InlineData("p-001", true)]
    [InlineData("Patient.42", true)]
    [InlineData("patient_0001", false)]
    [InlineData("urn:p:1", false)]
    [InlineData("", false)]
    [InlineData("p 1", false)]
    public void A_patient_id_is_a_FHIR_id(string id, bool valid) =>
        Assert.Equal(valid, Identifier.IsValidPatientId(id));

    [Fact]
    public void A_patient_id_may_be_64_characters_but_not_65()
    {
        Assert.True(Identifier.IsValidPatientId(new string('p', 64)));
        Assert.False(Identifier.IsValidPatientId(new string('p', 65)));
    }

    [Fact]
    public void An_id_may_be_128_characters_but_not_129()
    {
        Assert.True(Identifier.IsValid(new string('x', Identifier.MaxLength)));
        Assert.False(Identifier.IsValid(new string('x', Identifier.MaxLength + 1)));
        Assert.Equal(128, Identifier.MaxLength);
    }
}
