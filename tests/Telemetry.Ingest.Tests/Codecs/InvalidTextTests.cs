using System.Buffers;
using Telemetry.Ingest.Codecs;

namespace Telemetry.Ingest.Tests.Codecs;

/// <summary>
/// A field whose text is not text (bytes that are not UTF-8, an escape of a lone surrogate) names nothing: it costs only
/// its own reading. A payload whose structure is broken is refused whole, with a reason. Neither throws.
/// </summary>
public sealed class InvalidTextTests
{
    [Theory]
    [InlineData("{\"seq\":1,\"readings\":[{\"kind\":\"\\ud800\",\"time\":\"2026-11-24T10:00:00Z\",\"value\":72},{\"kind\":\"heart_rate\",\"time\":\"2026-11-24T10:00:00Z\",\"value\":73}]}", RejectReason.UnknownKind)]
    [InlineData("{\"seq\":1,\"readings\":[{\"kind\":\"heart_rate\",\"unit\":\"\\udc00\",\"time\":\"2026-11-24T09:59:59Z\",\"value\":72},{\"kind\":\"heart_rate\",\"time\":\"2026-11-24T10:00:00Z\",\"value\":73}]}", RejectReason.UnknownUnit)]
    [InlineData("[{\"bn\":\"w:\",\"n\":\"\\udfff\",\"v\":72},{\"n\":\"heart_rate\",\"v\":73}]", RejectReason.UnknownKind)]
    [InlineData("[{\"bn\":\"\\ud800x\",\"n\":\"heart_rate\",\"v\":72},{\"n\":\"heart_rate\",\"v\":73}]", RejectReason.MalformedRecord)]
    public void A_lone_surrogate_escape_costs_only_its_own_reading(string payload, RejectReason reason)
    {
        var builder = Wearable.NewBuilder();

        var decoded = Wearable.Decode(builder, payload, out _, out var error);

        Assert.True(decoded, error);
        Assert.Equal(73, Assert.Single(builder.ToArray()).Value);
        Assert.Equal((1, 1), (builder.RejectedCount, builder.RejectedFor(reason)));
    }

    [Fact]
    public void Bytes_that_are_not_utf8_inside_a_field_cost_only_their_reading()
    {
        var builder = Wearable.NewBuilder();
        byte[] payload = [.. "{\"seq\":1,\"readings\":[{\"kind\":\"hea"u8, 0xC3, 0x28, .. "\",\"time\":\"2026-11-24T10:00:00Z\",\"value\":72},"u8,
            .. "{\"kind\":\"heart_rate\",\"time\":\"2026-11-24T10:00:00Z\",\"value\":73}]}"u8];

        var decoded = PayloadDecoder.TryDecode(new ReadOnlySequence<byte>(payload), builder, out _, out var error);

        Assert.True(decoded, error);
        Assert.Equal(73, Assert.Single(builder.ToArray()).Value);
        Assert.Equal(1, builder.RejectedFor(RejectReason.UnknownKind));
    }

    [Fact]
    public void Bytes_that_are_not_utf8_in_the_structure_refuse_the_payload_and_never_throw()
    {
        var builder = Wearable.NewBuilder();
        byte[] payload = [.. "{\"seq\":1,\"read"u8, 0xC3, 0x28, .. "ings\":[{\"kind\":\"heart_rate\",\"time\":\"2026-11-24T10:00:00Z\",\"value\":72}]}"u8];

        var decoded = PayloadDecoder.TryDecode(new ReadOnlySequence<byte>(payload), builder, out _, out var error);

        Assert.False(decoded);
        Assert.False(string.IsNullOrEmpty(error));
        Assert.Equal(0, builder.Count);
    }
}
