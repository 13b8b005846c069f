using System.Text;
using Google.Protobuf;
using Telemetry.Core.Readings;
using Telemetry.Core.Vitals;
using Telemetry.Ingest.Codecs;
using Telemetry.Protos;
using static Google.Protobuf.WireFormat;

namespace Telemetry.Ingest.Tests.Codecs;

/// <summary>
/// The protobuf decoder reads the wire format itself: each test holds it to what the generated parser makes of the same
/// bytes, encoded again in the generated code's plain form (which the other decoder tests cover).
/// </summary>
public sealed class ProtobufWireFormatTests
{
    private static readonly string[] Kinds = ["heart_rate", "spo2", "8867-4", "blood_pressure", "85354-9", "body_temperature", "mood", ""];
    private static readonly string[] Units = ["", "%", "1", "[degF]", "kPa", "mm[Hg]", "stone"];

    [Fact]
    public void Fields_in_any_order_repeated_and_unpacked_read_as_protobuf_reads_them()
    {
        var series = Encode(output =>
        {
            Unknown(output, 9);
            output.WriteTag(1, WireType.LengthDelimited);
            output.WriteString("mood");
            PackedDeltas(output, 0, 1_000);
            output.WriteTag(3, WireType.Varint);
            output.WriteSInt64(500);
            output.WriteTag(4, WireType.Fixed64);
            output.WriteDouble(97);
            PackedValues(output, 96, 95);
            output.WriteTag(2, WireType.LengthDelimited);
            output.WriteString("%");
            output.WriteTag(1, WireType.LengthDelimited);
            output.WriteString("spo2");
            PackedDeltas(output, -250);
            output.WriteTag(4, WireType.Fixed64);
            output.WriteDouble(94);
        });
        var bytes = Encode(output =>
        {
            output.WriteTag(1, WireType.Varint);
            output.WriteUInt64(5);
            output.WriteTag(3, WireType.LengthDelimited);
            output.WriteBytes(ByteString.CopyFrom(series));
            Unknown(output, 20);
            output.WriteTag(2, WireType.Varint);
            output.WriteInt64(Wearable.NowMs - 10_000);
            output.WriteTag(1, WireType.LengthDelimited); // the sequence's number with another wire type: an unknown field
            output.WriteString("not a number");
            output.WriteTag(1, WireType.Varint);
            output.WriteUInt64(6);
            output.WriteTag(2, WireType.Varint);
            output.WriteInt64(Wearable.NowMs - 60_000);
        });

        var decoded = AssertSameAsGenerated(bytes);

        Assert.True(decoded.Accepted, decoded.Error);
        Assert.Equal(6UL, decoded.Sequence);
        Assert.Equal(
            [
                new VitalReading(VitalKind.OxygenSaturation, Wearable.NowMs - 60_000, 97),
                new VitalReading(VitalKind.OxygenSaturation, Wearable.NowMs - 59_000, 96),
                new VitalReading(VitalKind.OxygenSaturation, Wearable.NowMs - 58_500, 95),
                new VitalReading(VitalKind.OxygenSaturation, Wearable.NowMs - 58_750, 94),
            ],
            decoded.Readings);
    }

    [Fact]
    public void Random_batches_decode_as_the_generated_parser_decodes_them()
    {
        var random = new Random(20261203);
        for (var i = 0; i < 300; i++)
        {
            AssertSameAsGenerated(RandomBatch(random).ToByteArray());
        }
    }

    [Fact]
    public void Damaged_batches_are_refused_exactly_when_the_generated_parser_refuses_them()
    {
        var random = new Random(3122026);
        var refused = 0;
        for (var i = 0; i < 3_000; i++)
        {
            var bytes = RandomBatch(random).ToByteArray().ToList();
            switch (random.Next(3))
            {
                case 0 when bytes.Count > 0:
                    var at = random.Next(bytes.Count);
                    bytes.RemoveRange(at, Math.Min(1 + random.Next(3), bytes.Count - at));
                    break;
                case 1 when bytes.Count > 0:
                    bytes[random.Next(bytes.Count)] = (byte)random.Next(256);
                    break;
                default:
                    bytes.Insert(random.Next(bytes.Count + 1), (byte)random.Next(256));
                    break;
            }

            refused += AssertSameAsGenerated([.. bytes]).Accepted ? 0 : 1;
        }

        // Both sides of the comparison were exercised.
        Assert.InRange(refused, 300, 2_700);
    }

    [Theory]
    [InlineData(new byte[] { 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F })] // a series of length -1
    [InlineData(new byte[] { 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01 })] // -1 as ten bytes
    [InlineData(new byte[] { 0x00, 0x01 })] // field number zero
    [InlineData(new byte[] { 0x07, 0x01 })] // field number zero, wire type 7
    [InlineData(new byte[] { 0x4E, 0x01 })] // field 9, wire type 6
    [InlineData(new byte[] { 0x4C })] // an end-group tag with no start
    [InlineData(new byte[] { 0x4B, 0x08, 0x01, 0x54 })] // group 9 ended by field 10's end-group tag
    [InlineData(new byte[] { 0x4B, 0x08, 0x01 })] // group 9 never ended
    [InlineData(new byte[] { 0x1A, 0x03, 0x22, 0x01, 0x00 })] // packed values of one byte
    [InlineData(new byte[] { 0x1A, 0x03, 0x1A, 0x01, 0x80 })] // packed deltas ending inside a varint
    [InlineData(new byte[] { 0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01 })] // an eleven-byte varint
    [InlineData(new byte[] { 0x1A, 0x02, 0x21, 0x00 })] // a value of one byte in a series
    [InlineData(new byte[] { 0x4D, 0x00, 0x00 })] // a fixed32 of two bytes
    public void Malformed_wire_format_is_refused_as_protobuf_refuses_it(byte[] bytes)
    {
        var decoded = AssertSameAsGenerated(bytes);

        Assert.False(decoded.Accepted);
        Assert.StartsWith("malformed protobuf VitalBatch: ", decoded.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void A_packed_field_of_negative_length_is_refused_where_the_generated_parser_reads_it_as_empty()
    {
        byte[] bytes = [0x1A, 0x06, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F];

        var decoded = AssertSameAsGenerated(bytes);

        Assert.Single(VitalBatch.Parser.ParseFrom(bytes).Series);
        Assert.False(decoded.Accepted);
        Assert.Equal($"malformed protobuf VitalBatch: {ProtobufBatchReader.NegativePackedLength}", decoded.Error);
    }

    [Theory]
    [InlineData(false, 100)]
    [InlineData(false, 101)]
    [InlineData(true, 99)]
    [InlineData(true, 100)]
    public void Groups_nested_up_to_protobufs_recursion_limit_are_skipped_and_deeper_ones_refused(bool inSeries, int depth)
    {
        var groups = Encode(output =>
        {
            for (var i = 0; i < depth; i++)
            {
                output.WriteTag(9, WireType.StartGroup);
            }

            for (var i = 0; i < depth; i++)
            {
                output.WriteTag(9, WireType.EndGroup);
            }
        });
        var bytes = inSeries
            ? Encode(output =>
            {
                output.WriteTag(3, WireType.LengthDelimited);
                output.WriteBytes(ByteString.CopyFrom(groups));
            })
            : groups;

        AssertSameAsGenerated(bytes);
    }

    [Fact]
    public void Unknown_groups_and_fields_are_skipped_however_nested()
    {
        var bytes = Encode(output =>
        {
            output.WriteTag(9, WireType.StartGroup);
            output.WriteTag(10, WireType.StartGroup);
            Unknown(output, 11);
            output.WriteTag(10, WireType.EndGroup);
            output.WriteTag(9, WireType.EndGroup);
            output.WriteTag(2, WireType.Varint);
            output.WriteInt64(Wearable.NowMs);
            output.WriteTag(3, WireType.LengthDelimited);
            output.WriteBytes(new VitalSeries { Kind = "heart_rate", TimeDeltasMs = { 0 }, Values = { 61 } }.ToByteString());
        });

        var decoded = AssertSameAsGenerated(bytes);

        Assert.True(decoded.Accepted, decoded.Error);
        Assert.Equal([new VitalReading(VitalKind.HeartRate, Wearable.NowMs, 61)], decoded.Readings);
    }

    /// <summary>
    /// Holds the reader to the generated parser field by field (refused alike; the same sequence number, base time, and
    /// each series' kind, unit, deltas and values), then decodes the bytes into readings.
    /// </summary>
    private static Decoded AssertSameAsGenerated(byte[] bytes)
    {
        var input = Convert.ToHexString(bytes);
        VitalBatch? expected;
        string? refusal = null;
        try
        {
            expected = VitalBatch.Parser.ParseFrom(bytes);
        }
        catch (InvalidProtocolBufferException exception)
        {
            expected = null;
            refusal = exception.Message;
        }

        var scratch = new SeriesScratch();
        var read = ProtobufBatchReader.TryRead(bytes, scratch, out var sequence, out var baseTimeMs, out var error);
        // The one difference, on purpose: the generated parser reads a packed field of negative length as empty and goes
        // on (to accept the rest or not); the reader refuses it, as it refuses any other negative length.
        var negativePacked = !read && error == ProtobufBatchReader.NegativePackedLength;
        Assert.True(negativePacked || read == expected is not null, $"{input}: generated {refusal ?? "accepted"}, wire {error ?? "accepted"}");

        if (read && expected is not null)
        {
            Assert.True(expected.Seq == sequence && expected.BaseTimeMs == baseTimeMs, input);
            Assert.True(expected.Series.Count == scratch.All.Length, input);
            for (var i = 0; i < expected.Series.Count; i++)
            {
                var series = scratch.All[i];
                Assert.True(expected.Series[i].Kind == Encoding.UTF8.GetString(scratch.Kind(series)), input);
                Assert.True(expected.Series[i].Unit == Encoding.UTF8.GetString(scratch.Unit(series)), input);
                Assert.True(expected.Series[i].TimeDeltasMs.SequenceEqual(scratch.Deltas(series).ToArray()), input);
                Assert.True(expected.Series[i].Values.Select(BitConverter.DoubleToInt64Bits).SequenceEqual(scratch.Values(series).ToArray().Select(BitConverter.DoubleToInt64Bits)), input);
            }
        }

        var builder = Wearable.NewBuilder();
        var accepted = ProtobufBatchDecoder.TryDecode(bytes, builder, out var decodeError);
        Assert.True(accepted || !read || decodeError is not null, input);
        return new Decoded(accepted, decodeError, builder);
    }

    private static VitalBatch RandomBatch(Random random)
    {
        var batch = new VitalBatch
        {
            Seq = random.Next(3) == 0 ? 0 : (ulong)random.NextInt64(),
            BaseTimeMs = Wearable.NowMs - random.Next(3_600_000),
        };

        for (var s = random.Next(4); s > 0; s--)
        {
            var series = new VitalSeries { Kind = Kinds[random.Next(Kinds.Length)], Unit = Units[random.Next(Units.Length)] };
            var count = random.Next(6);
            var pairs = VitalCatalogue.TryFindPanel(series.Kind, out _) ? 2 : 1;
            for (var i = 0; i < count; i++)
            {
                series.TimeDeltasMs.Add(random.Next(5) == 0 ? random.NextInt64(long.MinValue / 4, long.MaxValue / 4) : random.Next(-2_000, 60_000));
            }

            // Mostly the right number of values; now and then one too few or too many.
            var values = (count * pairs) + (random.Next(10) == 0 ? random.Next(-1, 2) : 0);
            for (var i = 0; i < values; i++)
            {
                series.Values.Add(random.Next(20) == 0 ? double.NaN : 30 + (random.NextDouble() * 120));
            }

            batch.Series.Add(series);
        }

        return batch;
    }

    private static byte[] Encode(Action<CodedOutputStream> write)
    {
        using var stream = new MemoryStream();
        var output = new CodedOutputStream(stream);
        write(output);
        output.Flush();
        return stream.ToArray();
    }

    /// <summary>One unknown field of each wire type, from <paramref name="firstField"/> on, a group holding fields among them.</summary>
    private static void Unknown(CodedOutputStream output, int firstField)
    {
        output.WriteTag(firstField, WireType.Varint);
        output.WriteInt64(-3);
        output.WriteTag(firstField + 1, WireType.Fixed32);
        output.WriteFixed32(7);
        output.WriteTag(firstField + 2, WireType.Fixed64);
        output.WriteFixed64(11);
        output.WriteTag(firstField + 3, WireType.LengthDelimited);
        output.WriteString("skipped");
        output.WriteTag(firstField + 4, WireType.StartGroup);
        output.WriteTag(1, WireType.Varint);
        output.WriteInt32(1);
        output.WriteTag(firstField + 4, WireType.EndGroup);
    }

    private static void PackedDeltas(CodedOutputStream output, params long[] deltas)
    {
        output.WriteTag(3, WireType.LengthDelimited);
        output.WriteLength(deltas.Sum(delta => CodedOutputStream.ComputeSInt64Size(delta)));
        foreach (var delta in deltas)
        {
            output.WriteSInt64(delta);
        }
    }

    private static void PackedValues(CodedOutputStream output, params double[] values)
    {
        output.WriteTag(4, WireType.LengthDelimited);
        output.WriteLength(values.Length * sizeof(double));
        foreach (var value in values)
        {
            output.WriteDouble(value);
        }
    }

    private sealed class Decoded(bool accepted, string? error, ReadingBatchBuilder builder)
    {
        public bool Accepted { get; } = accepted;

        public string? Error { get; } = error;

        public ulong Sequence { get; } = builder.Sequence;

        public VitalReading[] Readings { get; } = builder.ToArray();

        public VitalReading[] Quarantined { get; } = [.. builder.Quarantined];

        public int[] Rejects { get; } = [.. Enum.GetValues<RejectReason>().Select(builder.RejectedFor)];
    }
}
