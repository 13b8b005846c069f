using System.Buffers;

namespace Telemetry.Ingest.Codecs;

/// <summary>
/// Decodes a device payload in whichever format its first byte names (after a UTF-8 byte order mark, which some
/// platforms write before JSON, and which no protobuf message starts with). Pure and synchronous.
/// </summary>
public static class PayloadDecoder
{
    private static ReadOnlySpan<byte> ByteOrderMark => [0xEF, 0xBB, 0xBF];

    /// <summary><paramref name="payload"/> without the UTF-8 byte order mark it starts with, if it does.</summary>
    public static ReadOnlySequence<byte> WithoutByteOrderMark(in ReadOnlySequence<byte> payload)
    {
        if (payload.Length < ByteOrderMark.Length)
        {
            return payload;
        }

        Span<byte> start = stackalloc byte[3];
        payload.Slice(0, 3).CopyTo(start);
        return start.SequenceEqual(ByteOrderMark) ? payload.Slice(3) : payload;
    }

    /// <summary>Whether <paramref name="payload"/> may yet turn out to start with a byte order mark (it holds a beginning of one, and no more).</summary>
    public static bool MayStartWithByteOrderMark(in ReadOnlySequence<byte> payload)
    {
        if (payload.Length is 0 or >= 3)
        {
            return false;
        }

        Span<byte> start = stackalloc byte[2];
        var length = (int)payload.Length;
        payload.CopyTo(start);
        return start[..length].SequenceEqual(ByteOrderMark[..length]);
    }

    /// <summary>The payload's first byte other than white space; 0 when none.</summary>
    private static byte FirstByte(in ReadOnlySequence<byte> payload)
    {
        var reader = new SequenceReader<byte>(payload);
        while (reader.TryRead(out var first))
        {
            if (first is not ((byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n'))
            {
                return first;
            }
        }

        return 0;
    }

    /// <summary>The format the payload's first byte other than white space names (after a byte order mark, if any).</summary>
    public static PayloadFormat Detect(in ReadOnlySequence<byte> payload) => DetectText(WithoutByteOrderMark(payload));

    /// <summary>As <see cref="Detect"/>, of a payload whose byte order mark (if any) is already passed over.</summary>
    private static PayloadFormat DetectText(in ReadOnlySequence<byte> payload) => FirstByte(payload) switch
    {
        (byte)'[' => PayloadFormat.SenMl,
        (byte)'{' => PayloadFormat.Json,
        _ => PayloadFormat.Protobuf,
    };

    /// <summary>
    /// Decodes <paramref name="payload"/> into <paramref name="batch"/> (which is reset first). False, with the reason in
    /// <paramref name="error"/>, when the payload as a whole is unreadable; individual bad readings are counted in the batch instead.
    /// </summary>
    public static bool TryDecode(in ReadOnlySequence<byte> payload, ReadingBatchBuilder batch, out PayloadFormat format, out string? error) =>
        TryDecode(payload, batch, nowMs: null, out format, out error);

    /// <summary>As <see cref="TryDecode(in ReadOnlySequence{byte}, ReadingBatchBuilder, out PayloadFormat, out string?)"/>, judged as of <paramref name="nowMs"/> (the clock's now when null).</summary>
    public static bool TryDecode(in ReadOnlySequence<byte> payload, ReadingBatchBuilder batch, long? nowMs, out PayloadFormat format, out string? error)
    {
        batch.Reset(nowMs);
        if (payload.IsEmpty)
        {
            format = PayloadFormat.Protobuf;
            error = "empty payload";
            return false;
        }

        var body = WithoutByteOrderMark(payload);
        format = DetectText(body);
        var decoded = format switch
        {
            PayloadFormat.SenMl => SenMlDecoder.TryDecode(body, batch, out error),
            PayloadFormat.Json => JsonBatchDecoder.TryDecode(body, batch, out error),
            _ => ProtobufBatchDecoder.TryDecode(payload, batch, out error),
        };

        if (decoded && batch.Overflowed)
        {
            error = $"a batch may hold at most {batch.Limits.MaxReadingsPerBatch} readings";
            decoded = false;
        }

        if (!decoded && format == PayloadFormat.Protobuf && FirstByte(body) is (byte)'"' or (byte)'-' or >= (byte)'0' and <= (byte)'9' or (byte)'t' or (byte)'f' or (byte)'n')
        {
            // Not binary at all but a JSON value other than an array or an object: most often a batch encoded twice, as a string.
            error = $"the payload is JSON that is neither a SenML array ('[') nor a batch object ('{{') (a batch encoded twice, as a JSON string?); read as protobuf: {error}";
        }

        if (!decoded)
        {
            batch.Reset(batch.NowMs);
        }

        return decoded;
    }
}
