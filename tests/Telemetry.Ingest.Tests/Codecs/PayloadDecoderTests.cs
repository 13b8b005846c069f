using System.Buffers;
using Google.Protobuf;
using Telemetry.Core.Readings;
using Telemetry.Core.Vitals;
using Telemetry.Ingest.Codecs;
using Telemetry.Protos;

namespace Telemetry.Ingest.Tests.Codecs;

public sealed class PayloadDecoderTests
{
    [Theory]
    [InlineData("[{\"n\":\"heart_rate\",\"v\":72}]", PayloadFormat.SenMl)]
    [InlineData("{\"readings\":[]}", PayloadFormat.Json)]
    [InlineData(" \r\n\t[]", PayloadFormat.SenMl)]
    [InlineData("\n  {}", PayloadFormat.Json)]
    [InlineData("x", PayloadFormat.Protobuf)]
    [InlineData("\uFEFF[]", PayloadFormat.SenMl)]
    [InlineData("\uFEFF {}", PayloadFormat.Json)]
    public void The_first_non_blank_byte_names_the_format(string payload, PayloadFormat expected) =>
        Assert.Equal(expected, PayloadDecoder.Detect(Wearable.Utf8(payload)));

    [Fact]
    public void A_protobuf_batch_is_detected_as_protobuf()
    {
        var batch = new VitalBatch { Seq = 1, BaseTimeMs = Wearable.NowMs };

        Assert.Equal(PayloadFormat.Protobuf, PayloadDecoder.Detect(new ReadOnlySequence<byte>(batch.ToByteArray())));
    }

    [Fact]
    public void Each_format_decodes_into_the_same_canonical_reading()
    {
        var builder = Wearable.NewBuilder();
        var senMl = $"[{{\"n\":\"heart_rate\",\"u\":\"/min\",\"t\":{Wearable.Now.ToUnixTimeSeconds()},\"v\":72}}]";
        var json = $"{{\"readings\":[{{\"kind\":\"heart_rate\",\"time\":\"{Wearable.Time(TimeSpan.Zero)}\",\"value\":72,\"unit\":\"/min\"}}]}}";
        var protobuf = new VitalBatch { BaseTimeMs = Wearable.NowMs, Series = { new VitalSeries { Kind = "heart_rate", TimeDeltasMs = { 0 }, Values = { 72 } } } };
        VitalReading[] expected = [new(VitalKind.HeartRate, Wearable.NowMs, 72)];

        Assert.True(Wearable.Decode(builder, senMl, out var senMlFormat, out _));
        Assert.Equal(expected, builder.ToArray());
        Assert.True(Wearable.Decode(builder, json, out var jsonFormat, out _));
        Assert.Equal(expected, builder.ToArray());
        Assert.True(PayloadDecoder.TryDecode(new ReadOnlySequence<byte>(protobuf.ToByteArray()), builder, out var protobufFormat, out _));
        Assert.Equal(expected, builder.ToArray());

        Assert.Equal(PayloadFormat.SenMl, senMlFormat);
        Assert.Equal(PayloadFormat.Json, jsonFormat);
        Assert.Equal(PayloadFormat.Protobuf, protobufFormat);
    }

    [Theory]
    [InlineData("\uFEFF{\"readings\":[{\"kind\":\"heart_rate\",\"time\":\"2026-11-24T10:00:00Z\",\"value\":72}]}", PayloadFormat.Json)]
    [InlineData("\uFEFF [{\"n\":\"heart_rate\",\"t\":1795514400,\"v\":72}]", PayloadFormat.SenMl)]
    public void A_byte_order_mark_before_json_is_passed_over(string payload, PayloadFormat expected)
    {
        var builder = Wearable.NewBuilder();

        Assert.True(Wearable.Decode(builder, payload, out var format, out var error), error);

        Assert.Equal(expected, format);
        Assert.Equal([new VitalReading(VitalKind.HeartRate, Wearable.NowMs, 72)], builder.ToArray());
    }

    [Theory]
    [InlineData("\"{\\\"seq\\\":1,\\\"readings\\\":[]}\"")]
    [InlineData(" 72")]
    [InlineData("null")]
    public void JSON_that_is_neither_an_array_nor_an_object_is_told_so_not_only_as_protobuf(string payload)
    {
        var builder = Wearable.NewBuilder();

        Assert.False(Wearable.Decode(builder, payload, out var format, out var error));

        Assert.Equal(PayloadFormat.Protobuf, format);
        Assert.Contains("encoded twice", error, StringComparison.Ordinal);
    }

    [Fact]
    public void An_empty_payload_is_refused()
    {
        var builder = Wearable.NewBuilder();

        Assert.False(PayloadDecoder.TryDecode(ReadOnlySequence<byte>.Empty, builder, out _, out var error));
        Assert.Equal("empty payload", error);
        Assert.Equal(0, builder.Count);
    }

    [Fact]
    public void A_reused_builder_forgets_the_previous_payloads_readings_rejects_and_sequence()
    {
        var builder = Wearable.NewBuilder();
        var time = Wearable.Time(TimeSpan.Zero);
        Assert.True(Wearable.Decode(
            builder,
            $"{{\"seq\":9,\"readings\":[{{\"kind\":\"heart_rate\",\"time\":\"{time}\",\"value\":70}},{{\"kind\":\"nope\",\"time\":\"{time}\",\"value\":1}}]}}",
            out _,
            out _));
        Assert.Equal((1, 1, 9UL), (builder.Count, builder.RejectedCount, builder.Sequence));

        Assert.True(Wearable.Decode(builder, $"{{\"readings\":[{{\"kind\":\"spo2\",\"time\":\"{time}\",\"value\":97}}]}}", out _, out _));

        Assert.Equal([new VitalReading(VitalKind.OxygenSaturation, Wearable.NowMs, 97)], builder.ToArray());
        Assert.Equal(0, builder.RejectedCount);
        Assert.Equal(0, builder.RejectedFor(RejectReason.UnknownKind));
        Assert.Equal(0UL, builder.Sequence);
        Assert.Null(builder.DescribeRejects());
    }

    [Fact]
    public void The_validation_window_follows_the_clock_at_each_payload()
    {
        var builder = Wearable.NewBuilder(out var clock);
        var payload = $"{{\"readings\":[{{\"kind\":\"heart_rate\",\"time\":\"{Wearable.Time(TimeSpan.FromMinutes(15))}\",\"value\":70}}]}}";

        Assert.True(Wearable.Decode(builder, payload, out _, out _));
        Assert.Equal(1, builder.RejectedFor(RejectReason.FutureTimestamp));

        clock.Advance(TimeSpan.FromMinutes(5));
        Assert.True(Wearable.Decode(builder, payload, out _, out _));

        Assert.Equal(1, builder.Count);
        Assert.Equal(0, builder.RejectedCount);
    }
}
