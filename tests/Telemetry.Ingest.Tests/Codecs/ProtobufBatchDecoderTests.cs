using System.Buffers;
using Google.Protobuf;
using Telemetry.Core.Readings;
using Telemetry.Core.Vitals;
using Telemetry.Ingest.Codecs;
using Telemetry.Protos;

namespace Telemetry.Ingest.Tests.Codecs;

public sealed class ProtobufBatchDecoderTests
{
    [Fact]
    public void Time_deltas_accumulate_from_the_base_time_per_series_and_the_sequence_is_kept()
    {
        var builder = Wearable.NewBuilder();
        var batch = new VitalBatch
        {
            Seq = 1_234,
            BaseTimeMs = Wearable.NowMs - 60_000,
            Series =
            {
                new VitalSeries { Kind = "heart_rate", TimeDeltasMs = { 0, 1_000, 1_500 }, Values = { 70, 71, 72 } },
                new VitalSeries { Kind = "8480-6", Unit = "kPa", TimeDeltasMs = { 250 }, Values = { 16 } },
                new VitalSeries { Kind = "body_temperature", Unit = "[degF]", TimeDeltasMs = { 10_000, -4_000 }, Values = { 98.6, 100.4 } },
            },
        };

        Assert.True(Decode(builder, batch, out var format, out var error), error);

        Assert.Equal(PayloadFormat.Protobuf, format);
        Assert.Equal(1_234UL, builder.Sequence);
        Assert.Equal(0, builder.RejectedCount);
        var readings = builder.ToArray();
        Assert.Equal(6, readings.Length);
        Assert.Equal(new VitalReading(VitalKind.HeartRate, Wearable.NowMs - 60_000, 70), readings[0]);
        Assert.Equal(new VitalReading(VitalKind.HeartRate, Wearable.NowMs - 59_000, 71), readings[1]);
        Assert.Equal(new VitalReading(VitalKind.HeartRate, Wearable.NowMs - 57_500, 72), readings[2]);
        AssertReading(readings[3], VitalKind.SystolicPressure, Wearable.NowMs - 59_750, 120.009852128);
        AssertReading(readings[4], VitalKind.BodyTemperature, Wearable.NowMs - 50_000, 37.0);
        AssertReading(readings[5], VitalKind.BodyTemperature, Wearable.NowMs - 54_000, 38.0);
    }

    [Fact]
    public void Series_of_unknown_kind_or_unit_are_rejected_per_value_and_others_kept()
    {
        var builder = Wearable.NewBuilder();
        var batch = new VitalBatch
        {
            BaseTimeMs = Wearable.NowMs,
            Series =
            {
                new VitalSeries { Kind = "mood", TimeDeltasMs = { 0, 1, 1 }, Values = { 120, 121, 122 } },
                new VitalSeries { Kind = "weight", Unit = "stone", TimeDeltasMs = { 0, 1 }, Values = { 11, 12 } },
                new VitalSeries { Kind = "spo2", Unit = "1", TimeDeltasMs = { 0, 1, 1 }, Values = { 0.97, double.NaN, 1.2 } },
                new VitalSeries { Kind = "steps", TimeDeltasMs = { -2_600_000_000, 2_600_000_000 + 700_000 }, Values = { 10, 20 } },
            },
        };

        Assert.True(Decode(builder, batch, out _, out var error), error);

        var reading = Assert.Single(builder.ToArray());
        AssertReading(reading, VitalKind.OxygenSaturation, Wearable.NowMs, 97);
        Assert.Equal(3, builder.RejectedFor(RejectReason.UnknownKind));
        Assert.Equal(2, builder.RejectedFor(RejectReason.UnknownUnit));
        Assert.Equal(1, builder.RejectedFor(RejectReason.MissingValue));
        Assert.Equal(1, builder.RejectedFor(RejectReason.Implausible));
        Assert.Equal(1, builder.RejectedFor(RejectReason.TooOld));
        Assert.Equal(1, builder.RejectedFor(RejectReason.FutureTimestamp));
        Assert.Equal(9, builder.RejectedCount);
    }

    [Fact]
    public void A_series_with_more_values_than_time_deltas_refuses_the_whole_batch()
    {
        var builder = Wearable.NewBuilder();
        var batch = new VitalBatch
        {
            Seq = 8,
            BaseTimeMs = Wearable.NowMs,
            Series =
            {
                new VitalSeries { Kind = "heart_rate", TimeDeltasMs = { 0 }, Values = { 70 } },
                new VitalSeries { Kind = "spo2", TimeDeltasMs = { 0, 1_000 }, Values = { 97, 98, 99 } },
            },
        };

        Assert.False(Decode(builder, batch, out _, out var error));

        Assert.Equal("series 'spo2' has 2 time deltas but 3 values", error);
        Assert.Equal(0, builder.Count);
        Assert.Equal(0UL, builder.Sequence);
    }

    [Fact]
    public void A_series_name_echoed_in_a_refusal_shows_its_control_characters_as_question_marks()
    {
        // An MQTT 5 reason string may not hold U+0000: the PUBACK carrying this answer would be a malformed packet.
        var batch = new VitalBatch { BaseTimeMs = Wearable.NowMs, Series = { new VitalSeries { Kind = "sp\0o2\n", TimeDeltasMs = { 0 }, Values = { 97, 98 } } } };

        Assert.False(Decode(Wearable.NewBuilder(), batch, out _, out var error));

        Assert.Equal("series 'sp?o2?' has 1 time deltas but 2 values", error);
    }

    [Theory]
    [InlineData(new byte[] { 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF })]
    [InlineData(new byte[] { 0x1A, 0x40, 0x0A, 0x02 })]
    [InlineData(new byte[] { 0x0F })]
    [InlineData(new byte[] { 0x47, 0x45, 0x54, 0x20, 0x2F })]
    public void Garbage_bytes_are_refused_as_malformed_protobuf(byte[] payload)
    {
        var builder = Wearable.NewBuilder();

        Assert.False(PayloadDecoder.TryDecode(new ReadOnlySequence<byte>(payload), builder, out var format, out var error));

        Assert.Equal(PayloadFormat.Protobuf, format);
        Assert.StartsWith("malformed protobuf VitalBatch", error, StringComparison.Ordinal);
        Assert.Equal(0, builder.Count);
    }

    [Fact]
    public void A_truncated_batch_is_refused_and_keeps_nothing()
    {
        var builder = Wearable.NewBuilder();
        var bytes = ThreeHeartRates(seq: 3);

        Assert.False(PayloadDecoder.TryDecode(new ReadOnlySequence<byte>(bytes.AsMemory(0, bytes.Length - 3)), builder, out _, out var error));

        Assert.StartsWith("malformed protobuf VitalBatch", error, StringComparison.Ordinal);
        Assert.Equal(0, builder.Count);
        Assert.Equal(0UL, builder.Sequence);
    }

    [Fact]
    public void A_stream_batch_that_cannot_be_read_keeps_its_sequence_for_the_answer_and_a_long_kind_is_cut_in_the_reason()
    {
        // A gRPC stream answers each batch by its sequence number: a refused one must name it, or the device never
        // learns which of its batches was refused.
        var builder = Wearable.NewBuilder();
        var bytes = ThreeHeartRates(seq: 3);

        Assert.False(ProtobufBatchDecoder.TryDecode(bytes.AsSpan(0, bytes.Length - 3), builder, out _));
        Assert.Equal(3UL, builder.Sequence);

        builder.Reset();
        var longKind = new VitalBatch
        {
            Seq = 4,
            BaseTimeMs = Wearable.NowMs,
            Series = { new VitalSeries { Kind = new string('A', 200_000), TimeDeltasMs = { 0 }, Values = { 1, 2 } } },
        }.ToByteArray();
        Assert.False(ProtobufBatchDecoder.TryDecode(longKind, builder, out var error));
        Assert.Equal(4UL, builder.Sequence);
        Assert.InRange(error!.Length, 1, 200);
        Assert.Contains(new string('A', 64) + "…'", error, StringComparison.Ordinal);
    }

    [Fact]
    public void A_batch_split_across_segments_decodes_the_same()
    {
        var builder = Wearable.NewBuilder();
        var bytes = new VitalBatch
        {
            Seq = 5,
            BaseTimeMs = Wearable.NowMs,
            Series = { new VitalSeries { Kind = "respiratory_rate", TimeDeltasMs = { 0, 4_000 }, Values = { 14, 16 } } },
        }.ToByteArray();

        Assert.True(PayloadDecoder.TryDecode(Segment.Split(bytes, bytes.Length / 2), builder, out _, out var error), error);

        Assert.Equal(
            [new VitalReading(VitalKind.RespiratoryRate, Wearable.NowMs, 14), new VitalReading(VitalKind.RespiratoryRate, Wearable.NowMs + 4_000, 16)],
            builder.ToArray());
        Assert.Equal(5UL, builder.Sequence);
    }

    [Fact]
    public void A_batch_of_exactly_the_limit_is_accepted()
    {
        var builder = Wearable.NewBuilder();

        Assert.True(Decode(builder, Steps(ValidationLimits.Default.MaxReadingsPerBatch), out _, out var error), error);

        Assert.Equal(10_000, builder.Count);
        Assert.Equal(9_999, builder.Readings[^1].Value);
    }

    [Fact]
    public void A_batch_above_the_limit_is_refused_whole()
    {
        var builder = Wearable.NewBuilder();

        Assert.False(Decode(builder, Steps(ValidationLimits.Default.MaxReadingsPerBatch + 1), out _, out var error));

        Assert.Equal("a batch may hold at most 10000 readings", error);
        Assert.Equal(0, builder.Count);
        Assert.False(builder.Overflowed);
    }

    [Fact]
    public void A_batch_with_more_implausible_readings_than_a_batch_holds_is_refused_whole_not_quarantined_in_part()
    {
        var builder = Wearable.NewBuilder();
        var kept = Steps(ValidationLimits.Default.MaxReadingsPerBatch);
        kept.Series[0].Kind = "heart_rate";
        kept.Series[0].Values.Clear();
        kept.Series[0].Values.Add(Enumerable.Repeat(900.0, ValidationLimits.Default.MaxReadingsPerBatch));

        Assert.True(Decode(builder, kept, out _, out var error), error);
        Assert.Equal(10_000, builder.Quarantined.Count);

        kept.Series[0].TimeDeltasMs.Add(1);
        kept.Series[0].Values.Add(900);
        Assert.False(Decode(builder, kept, out _, out error));
        Assert.Equal("a batch may hold at most 10000 readings", error);
        Assert.Empty(builder.Quarantined);
    }

    private static VitalBatch Steps(int count)
    {
        var series = new VitalSeries { Kind = "steps" };
        for (var i = 0; i < count; i++)
        {
            series.TimeDeltasMs.Add(i == 0 ? 0 : 1);
            series.Values.Add(i);
        }

        return new VitalBatch { Seq = 1, BaseTimeMs = Wearable.NowMs - count, Series = { series } };
    }

    private static bool Decode(ReadingBatchBuilder builder, VitalBatch batch, out PayloadFormat format, out string? error) =>
        PayloadDecoder.TryDecode(new ReadOnlySequence<byte>(batch.ToByteArray()), builder, out format, out error);

    private static void AssertReading(VitalReading reading, VitalKind kind, long timestampMs, double value)
    {
        Assert.Equal(kind, reading.Kind);
        Assert.Equal(timestampMs, reading.TimestampMs);
        Assert.Equal(value, reading.Value, 1e-6);
    }

    /// <summary>A batch of three heart rates a second apart, encoded.</summary>
    private static byte[] ThreeHeartRates(ulong seq) => new VitalBatch
    {
        Seq = seq,
        BaseTimeMs = Wearable.NowMs,
        Series = { new VitalSeries { Kind = "heart_rate", TimeDeltasMs = { 0, 1_000, 1_000 }, Values = { 70, 71, 72 } } },
    }.ToByteArray();
}
