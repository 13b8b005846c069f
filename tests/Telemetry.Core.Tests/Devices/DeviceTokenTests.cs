using Telemetry.Core.Devices;

namespace Telemetry.Core.Tests.Devices;

public sealed class DeviceTokenTests
{
    private static readonly string Secret = new('a', 64);

    [Fact]
    public void A_formatted_token_parses_back_into_device_and_secret()
    {
        var secret = DeviceToken.NewSecret();
        var token = DeviceToken.Format("watch-42", secret);

        Assert.Equal($"watch-42.{secret}", token);
        Assert.True(DeviceToken.TryParse(token, out var deviceId, out var parsedSecret));
        Assert.Equal("watch-42", deviceId);
        Assert.Equal(secret, parsedSecret);
    }

    [Fact]
    public void A_device_id_containing_dots_survives_the_round_trip()
    {
        var token = DeviceToken.Format("ward.3.bed.7", Secret);

        Assert.True(DeviceToken.TryParse(token, out var deviceId, out var secret));
        Assert.Equal("ward.3.bed.7", deviceId);
        Assert.Equal(Secret, secret);
    }

    [Fact]
    public void New_secrets_are_64_lowercase_hex_digits_and_differ()
    {
        var first = DeviceToken.NewSecret();
        var second = DeviceToken.NewSecret();

        Assert.Matches("^[0-9a-f]{64}$", first);
        Assert.Matches("^[0-9a-f]{64}$", second);
        Assert.NotEqual(first, second);
    }

    [Theory]
    [InlineData("")]
    [InlineData("watch-42")]
    [InlineData("watch-42.")]
    [InlineData("watch-42.abc")]
    [InlineData(".aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")]
    [InlineData("watch-42.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")]
    [InlineData("watch-42.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")]
    [InlineData("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.watch-42")]
    public void Malformed_tokens_are_refused_and_yield_nothing(string token)
    {
        Assert.False(DeviceToken.TryParse(token, out var deviceId, out var secret));
        Assert.Empty(deviceId);
        Assert.Empty(secret);
    }

    [Theory]
    [InlineData("watch-42", false)]
    [InlineData("cafe-babe-0042", false)]
    [InlineData("a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d", false)]
    [InlineData("a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6", true)]
    [InlineData("watch-42.0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", true)]
    public void Text_that_may_hold_a_secret_is_recognised(string text, bool mayHoldSecret) =>
        Assert.Equal(mayHoldSecret, DeviceToken.MayHoldSecret(text));

    [Fact]
    public void A_secret_carried_in_a_grain_call_is_never_written_out()
    {
        var secret = new DeviceSecret(DeviceToken.NewSecret());

        Assert.Equal("***", secret.ToString());
        Assert.DoesNotContain(secret.Value, $"authenticate({secret}) {new { secret }}", StringComparison.Ordinal);
    }
}
