using System.Buffers;
using Telemetry.Ingest.Codecs;

namespace Telemetry.Ingest.Tests.Codecs;

/// <summary>Text that is not valid UTF-8, or escapes that are not characters, is refused with a reason and never throws.</summary>
public sealed class InvalidTextTests
{
    [Theory]
    [InlineData("{\"seq\":1,\"readings\":[{\"kind\":\"\\ud800\",\"time\":\"2026-11-24T10:00:00Z\",\"value\":72}]}")]
    [InlineData("[{\"bn\":\"w:\",\"n\":\"\\udfff\",\"v\":72}]")]
    [InlineData("[{\"bn\":\"\\ud800x\",\"n\":\"heart_rate\",\"v\":72}]")]
    public void A_lone_surrogate_escape_is_refused_not_thrown(string payload)
    {
        var builder = Wearable.NewBuilder();

        var decoded = Wearable.Decode(builder, payload, out _, out var error);

        Assert.False(decoded);
        Assert.False(string.IsNullOrEmpty(error));
        Assert.Equal(0, builder.Count);
    }

    [Fact]
    public void Bytes_that_are_not_utf8_inside_a_string_are_refused_not_thrown()
    {
        var builder = Wearable.NewBuilder();
        byte[] payload = [.. "{\"seq\":1,\"readings\":[{\"kind\":\"hea"u8, 0xC3, 0x28, .. "\",\"time\":\"2026-11-24T10:00:00Z\",\"value\":72}]}"u8];

        var decoded = PayloadDecoder.TryDecode(new ReadOnlySequence<byte>(payload), builder, out _, out var error);

        Assert.False(decoded);
        Assert.False(string.IsNullOrEmpty(error));
        Assert.Equal(0, builder.Count);
    }
}
