using System.Buffers.Binary;
using System.Text.Unicode;

namespace Telemetry.Ingest.Codecs;

/// <summary>
/// Reads a <c>VitalBatch</c> from protobuf's wire format into a <see cref="SeriesScratch"/>, and refuses what protobuf's
/// own parser refuses: input that ends inside a field, a varint longer than ten bytes, a negative length, field number
/// zero, an undefined wire type, an end-group tag with no start, a kind or unit that is not UTF-8. A known field number
/// with another wire type than its own is an unknown field, skipped as the generated parser skips it. One difference,
/// on purpose: a packed field of negative length, which the generated parser reads as empty, is refused like any other
/// negative length.
/// </summary>
internal static class ProtobufBatchReader
{
    private const int Varint = 0;
    private const int Fixed64 = 1;
    private const int LengthDelimited = 2;
    private const int StartGroup = 3;
    private const int EndGroup = 4;
    private const int Fixed32 = 5;

    // The deepest nesting of groups skipped, as protobuf's default recursion limit.
    private const int MaxDepth = 100;

    // VitalBatch's fields: (field number << 3) | wire type.
    private const uint SequenceTag = (1 << 3) | Varint;
    private const uint BaseTimeTag = (2 << 3) | Varint;
    private const uint SeriesTag = (3 << 3) | LengthDelimited;

    // VitalSeries' fields; its repeated numbers come packed (proto3's default) or one field each.
    private const uint KindTag = (1 << 3) | LengthDelimited;
    private const uint UnitTag = (2 << 3) | LengthDelimited;
    private const uint DeltaTag = (3 << 3) | Varint;
    private const uint PackedDeltasTag = (3 << 3) | LengthDelimited;
    private const uint ValueTag = (4 << 3) | Fixed64;
    private const uint PackedValuesTag = (4 << 3) | LengthDelimited;

    private const string Truncated = "the input ends inside a field";

    /// <summary>The refusal of a packed field of negative length (which the generated parser reads as empty).</summary>
    public const string NegativePackedLength = "a packed field's length is negative";

    public static bool TryRead(ReadOnlySpan<byte> payload, SeriesScratch scratch, out ulong sequence, out long baseTimeMs, out string? error)
    {
        sequence = 0;
        baseTimeMs = 0;
        var reader = new WireReader(payload);
        while (!reader.End)
        {
            if (!reader.TryReadTag(out var tag, out error))
            {
                return false;
            }

            switch (tag)
            {
                case SequenceTag:
                    if (!reader.TryReadVarint(out sequence, out error))
                    {
                        return false;
                    }

                    break;
                case BaseTimeTag:
                    if (!reader.TryReadVarint(out var baseTime, out error))
                    {
                        return false;
                    }

                    baseTimeMs = (long)baseTime;
                    break;
                case SeriesTag:
                    if (!reader.TryReadLengthDelimited(out var series, out error) || !TryReadSeries(series, scratch, out error))
                    {
                        return false;
                    }

                    break;
                default:
                    if (!reader.TrySkip(tag, depth: 0, out error))
                    {
                        return false;
                    }

                    break;
            }
        }

        error = null;
        return true;
    }

    private static bool TryReadSeries(ReadOnlySpan<byte> series, SeriesScratch scratch, out string? error)
    {
        scratch.BeginSeries();
        var reader = new WireReader(series);
        while (!reader.End)
        {
            if (!reader.TryReadTag(out var tag, out error))
            {
                return false;
            }

            switch (tag)
            {
                case KindTag:
                case UnitTag:
                    if (!reader.TryReadLengthDelimited(out var text, out error))
                    {
                        return false;
                    }

                    if (!Utf8.IsValid(text))
                    {
                        error = $"the {(tag == KindTag ? "kind" : "unit")} of a series is not valid UTF-8";
                        return false;
                    }

                    if (tag == KindTag)
                    {
                        scratch.SetKind(text);
                    }
                    else
                    {
                        scratch.SetUnit(text);
                    }

                    break;
                case DeltaTag:
                    if (!reader.TryReadVarint(out var delta, out error))
                    {
                        return false;
                    }

                    scratch.AddDelta(ZigZag(delta));
                    break;
                case PackedDeltasTag:
                    if (!reader.TryReadLengthDelimited(out var packedDeltas, out error, NegativePackedLength) || !TryReadDeltas(packedDeltas, scratch, out error))
                    {
                        return false;
                    }

                    break;
                case ValueTag:
                    if (!reader.TryReadFixed64(out var value, out error))
                    {
                        return false;
                    }

                    scratch.AddValue(BitConverter.UInt64BitsToDouble(value));
                    break;
                case PackedValuesTag:
                    if (!reader.TryReadLengthDelimited(out var packedValues, out error, NegativePackedLength))
                    {
                        return false;
                    }

                    if (packedValues.Length % sizeof(double) != 0)
                    {
                        error = Truncated;
                        return false;
                    }

                    scratch.AddValues(packedValues);
                    break;
                default:
                    if (!reader.TrySkip(tag, depth: 1, out error))
                    {
                        return false;
                    }

                    break;
            }
        }

        error = null;
        return true;
    }

    private static bool TryReadDeltas(ReadOnlySpan<byte> packed, SeriesScratch scratch, out string? error)
    {
        var reader = new WireReader(packed);
        while (!reader.End)
        {
            if (!reader.TryReadVarint(out var delta, out error))
            {
                return false;
            }

            scratch.AddDelta(ZigZag(delta));
        }

        error = null;
        return true;
    }

    private static long ZigZag(ulong value) => (long)(value >> 1) ^ -(long)(value & 1);

    private ref struct WireReader(ReadOnlySpan<byte> buffer)
    {
        private readonly ReadOnlySpan<byte> _buffer = buffer;
        private int _position;

        public readonly bool End => _position >= _buffer.Length;

        public bool TryReadVarint(out ulong value, out string? error)
        {
            value = 0;
            for (var shift = 0; shift < 64; shift += 7)
            {
                if (_position >= _buffer.Length)
                {
                    error = Truncated;
                    return false;
                }

                var next = _buffer[_position++];
                value |= (ulong)(next & 0x7F) << shift;
                if (next < 0x80)
                {
                    error = null;
                    return true;
                }
            }

            error = "a varint is longer than ten bytes";
            return false;
        }

        /// <summary>Reads a tag (as a 32-bit varint, as protobuf does) and checks its field number and wire type.</summary>
        public bool TryReadTag(out uint tag, out string? error)
        {
            tag = 0;
            if (!TryReadVarint(out var value, out error))
            {
                return false;
            }

            tag = (uint)value;
            if (tag >> 3 == 0)
            {
                error = "a field number is zero";
                return false;
            }

            if ((tag & 7) > Fixed32)
            {
                error = $"field {tag >> 3} has wire type {tag & 7}, which protobuf does not define";
                return false;
            }

            return true;
        }

        public bool TryReadFixed64(out ulong value, out string? error)
        {
            if (_buffer.Length - _position < sizeof(ulong))
            {
                value = 0;
                error = Truncated;
                return false;
            }

            value = BinaryPrimitives.ReadUInt64LittleEndian(_buffer[_position..]);
            _position += sizeof(ulong);
            error = null;
            return true;
        }

        public bool TryReadLengthDelimited(out ReadOnlySpan<byte> field, out string? error, string negative = "a length is negative")
        {
            field = default;
            if (!TryReadVarint(out var value, out error))
            {
                return false;
            }

            // A length is a 32-bit varint: protobuf takes the low 32 bits, and refuses one that is then negative.
            var length = (int)(uint)value;
            if (length < 0)
            {
                error = negative;
                return false;
            }

            if (_buffer.Length - _position < length)
            {
                error = Truncated;
                return false;
            }

            field = _buffer.Slice(_position, length);
            _position += length;
            return true;
        }

        /// <summary>Skips the value of a field this reader does not use (a group with all it holds).</summary>
        public bool TrySkip(uint tag, int depth, out string? error)
        {
            switch ((int)(tag & 7))
            {
                case Varint:
                    return TryReadVarint(out _, out error);
                case Fixed64:
                    return TryReadFixed64(out _, out error);
                case LengthDelimited:
                    return TryReadLengthDelimited(out _, out error);
                case Fixed32:
                    if (_buffer.Length - _position < sizeof(uint))
                    {
                        error = Truncated;
                        return false;
                    }

                    _position += sizeof(uint);
                    error = null;
                    return true;
                case StartGroup:
                    if (depth >= MaxDepth)
                    {
                        error = "groups are nested too deeply";
                        return false;
                    }

                    while (true)
                    {
                        if (End)
                        {
                            error = Truncated;
                            return false;
                        }

                        if (!TryReadTag(out var inner, out error))
                        {
                            return false;
                        }

                        if ((inner & 7) == EndGroup)
                        {
                            if (inner >> 3 != tag >> 3)
                            {
                                error = $"group {tag >> 3} is ended by the end-group tag of field {inner >> 3}";
                                return false;
                            }

                            return true;
                        }

                        if (!TrySkip(inner, depth + 1, out error))
                        {
                            return false;
                        }
                    }

                default:
                    error = $"an end-group tag of field {tag >> 3} has no start-group";
                    return false;
            }
        }
    }
}
