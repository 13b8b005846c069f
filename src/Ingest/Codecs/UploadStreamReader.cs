using System.Buffers;
using System.Text.Json;

namespace Telemetry.Ingest.Codecs;

/// <summary>
/// Reads a bulk upload of any size piece by piece, as it arrives: each call decodes the complete records in the
/// buffer into a <see cref="ReadingBatchBuilder"/> and says how far it got, so the caller can advance its pipe, commit
/// a full batch, and call again. Nothing is kept between calls but the position in the document; memory stays flat
/// however large the upload. Pure and synchronous.
/// </summary>
public sealed class UploadStreamReader(UploadFormat format, int readingsPerBatch, int maxRecordBytes)
{
    private readonly SenMlContext _senMl = new();
    private const int JsonRecordDepth = 6;
    private const int SenMlRecordDepth = 3;

    // Room, beyond a record's own limit, for what may come before it while it is read in: a field's tag and length.
    private const int FramingBytes = 16;

    private JsonReaderState _json = new(new JsonReaderOptions { MaxDepth = 8 });
    private Phase _phase = Phase.Start;

    // The format read: a payload's once its first byte is known.
    private UploadFormat _format = format;

    // A protobuf VitalBatch's base time, and whether a series has been read with it (which a later base time would move).
    private long _baseTimeMs;
    private bool _seriesRead;

    // Whether the upload's first bytes have been looked at (for a byte order mark).
    private bool _started;

    // Whether anything but white space has come: an upload of none is empty, whatever its format.
    private bool _anyContent;

    // Why the first record refused alone could not be read, when its decoder said (a protobuf message's), until taken.
    private string? _recordError;
    private bool _recordErrorTaken;

    private enum Phase
    {
        Start,
        Properties,
        Records,
        Suffix,
        Done,
    }

    /// <summary>The upload's format: for a <see cref="UploadFormat.Payload"/>, the one its first byte named, once read.</summary>
    public UploadFormat Format => _format;

    /// <summary>Why the upload was refused, after <see cref="UploadReadStatus.Malformed"/>.</summary>
    public string? Error { get; private set; }

    /// <summary>
    /// After <see cref="UploadReadStatus.Malformed"/>: the refusal is of the SenML pack as a whole (a must-understand
    /// field, a later version), so the part of it in the batch is not to be stored either.
    /// </summary>
    public bool PackRefused { get; private set; }

    /// <summary>
    /// Why the upload's first record refused alone (counted as <c>malformed_record</c>) could not be read, once: for the
    /// device's reject log, where a count alone would not say what to mend. Null when there is none, or once taken.
    /// </summary>
    public string? TakeRecordError()
    {
        if (_recordErrorTaken || _recordError is null)
        {
            return null;
        }

        _recordErrorTaken = true;
        return _recordError;
    }

    /// <summary>
    /// Decodes complete records from <paramref name="buffer"/> until it runs out or <paramref name="batch"/> holds a
    /// batch's worth. <paramref name="consumed"/> is where the next call's buffer must start.
    /// </summary>
    public UploadReadStatus Read(in ReadOnlySequence<byte> buffer, bool isFinalBlock, ReadingBatchBuilder batch, out SequencePosition consumed)
    {
        consumed = buffer.Start;
        if (Error is not null)
        {
            return UploadReadStatus.Malformed;
        }

        if (!_started && _format != UploadFormat.DelimitedProtobuf)
        {
            // A UTF-8 byte order mark before the text, as some platforms write: passed over.
            if (!isFinalBlock && (buffer.IsEmpty || PayloadDecoder.MayStartWithByteOrderMark(buffer)))
            {
                return UploadReadStatus.NeedMoreData;
            }

            _started = true;
            var text = PayloadDecoder.WithoutByteOrderMark(buffer);
            if (text.Length != buffer.Length)
            {
                return Read(text, isFinalBlock, batch, out consumed);
            }
        }

        if (_format == UploadFormat.Payload)
        {
            // Read as an MQTT payload is: by its first byte other than white space.
            if (FirstNonWhiteSpace(buffer) is not { } first)
            {
                if (isFinalBlock)
                {
                    return Fail("the upload is empty: it holds no readings");
                }

                return buffer.Length > maxRecordBytes ? Fail($"a record or value may be at most {maxRecordBytes} bytes") : UploadReadStatus.NeedMoreData;
            }

            _format = first switch
            {
                (byte)'[' => UploadFormat.SenMl,
                (byte)'{' => UploadFormat.JsonBatch,
                _ => UploadFormat.Protobuf,
            };
        }

        _anyContent = _anyContent || (_format is UploadFormat.DelimitedProtobuf or UploadFormat.Protobuf ? !buffer.IsEmpty : FirstNonWhiteSpace(buffer) is not null);
        if (isFinalBlock && !_anyContent)
        {
            return Fail("the upload is empty: it holds no readings");
        }

        try
        {
            var status = _format switch
            {
                UploadFormat.NdJson => ReadLines(buffer, isFinalBlock, batch, ref consumed),
                UploadFormat.DelimitedProtobuf => ReadMessages(buffer, isFinalBlock, batch, ref consumed),
                UploadFormat.Protobuf => ReadFields(buffer, isFinalBlock, batch, ref consumed),
                _ => ReadJson(buffer, isFinalBlock, batch, ref consumed),
            };

            if (status == UploadReadStatus.NeedMoreData && isFinalBlock)
            {
                return Fail("the upload ends in the middle of a record");
            }

            // Whatever waits for more data (a record, a value outside the records, white space) is bounded too, with room
            // for what comes before a record of the largest size (a comma, a protobuf field's tag and length).
            if (status == UploadReadStatus.NeedMoreData && buffer.Slice(consumed).Length > maxRecordBytes + FramingBytes)
            {
                return Fail($"a record or value may be at most {maxRecordBytes} bytes");
            }

            return status;
        }
        catch (Exception exception) when (exception is JsonException or InvalidOperationException)
        {
            // InvalidOperationException: a string that is not valid UTF-8 or holds a lone surrogate escape.
            return Fail($"malformed {Describe(_format)}: {exception.Message}");
        }
    }

    private UploadReadStatus ReadJson(in ReadOnlySequence<byte> buffer, bool isFinalBlock, ReadingBatchBuilder batch, ref SequencePosition consumed)
    {
        var reader = new Utf8JsonReader(buffer, isFinalBlock, _json);
        while (true)
        {
            switch (_phase)
            {
                case Phase.Start:
                    if (!reader.Read())
                    {
                        return UploadReadStatus.NeedMoreData;
                    }

                    if (_format == UploadFormat.SenMl)
                    {
                        if (reader.TokenType != JsonTokenType.StartArray)
                        {
                            return Fail("SenML must be a JSON array of records");
                        }

                        _phase = Phase.Records;
                    }
                    else
                    {
                        if (reader.TokenType != JsonTokenType.StartObject)
                        {
                            return Fail("a JSON batch must be an object");
                        }

                        _phase = Phase.Properties;
                    }

                    Save(ref reader, buffer, ref consumed);
                    break;

                case Phase.Properties or Phase.Suffix:
                    if (!reader.Read())
                    {
                        return UploadReadStatus.NeedMoreData;
                    }

                    if (reader.TokenType == JsonTokenType.EndObject)
                    {
                        if (_phase == Phase.Properties)
                        {
                            return Fail("a JSON batch needs a \"readings\" array");
                        }

                        _phase = Phase.Done;
                        Save(ref reader, buffer, ref consumed);
                        break;
                    }

                    // A second "readings" array is read too, as an MQTT payload's is: none is dropped unanswered.
                    var isReadings = reader.ValueTextEquals("readings"u8);
                    if (!reader.Read())
                    {
                        return UploadReadStatus.NeedMoreData;
                    }

                    if (isReadings)
                    {
                        if (reader.TokenType != JsonTokenType.StartArray)
                        {
                            return Fail("\"readings\" must be an array");
                        }

                        _phase = Phase.Records;
                    }
                    else if (!reader.TrySkip())
                    {
                        return UploadReadStatus.NeedMoreData;
                    }

                    Save(ref reader, buffer, ref consumed);
                    break;

                case Phase.Records:
                    if (IsFull(batch))
                    {
                        return UploadReadStatus.BatchFull;
                    }

                    if (!reader.Read())
                    {
                        return UploadReadStatus.NeedMoreData;
                    }

                    if (reader.TokenType == JsonTokenType.EndArray)
                    {
                        _phase = _format == UploadFormat.SenMl ? Phase.Done : Phase.Suffix;
                        Save(ref reader, buffer, ref consumed);
                        break;
                    }

                    // A record that is not an object is refused alone (counted), as a bad line of NDJSON is.
                    var isRecord = reader.TokenType == JsonTokenType.StartObject;
                    var start = reader.TokenStartIndex;
                    if (!reader.TrySkip())
                    {
                        return buffer.Length - start > maxRecordBytes
                            ? Fail($"a record may be at most {maxRecordBytes} bytes")
                            : UploadReadStatus.NeedMoreData;
                    }

                    if (reader.BytesConsumed - start > maxRecordBytes)
                    {
                        return Fail($"a record may be at most {maxRecordBytes} bytes");
                    }

                    if (!isRecord)
                    {
                        batch.Reject(RejectReason.MalformedRecord);
                    }
                    else if (DecodeRecord(buffer.Slice(start, reader.BytesConsumed - start), batch) is { } refused)
                    {
                        // A SenML pack the decoder may not use (a must-understand field, a later version): refused, and
                        // the part read so far with it (parts committed before it are stored).
                        PackRefused = true;
                        return Fail(refused);
                    }

                    Save(ref reader, buffer, ref consumed);
                    break;

                default:
                    // Only white space may follow the document.
                    if (reader.Read())
                    {
                        return Fail("unexpected content after the end of the upload");
                    }

                    consumed = buffer.GetPosition(reader.BytesConsumed);
                    return isFinalBlock ? UploadReadStatus.Completed : UploadReadStatus.NeedMoreData;
            }
        }
    }

    /// <summary>Decodes one record into <paramref name="batch"/>; an error when the whole upload is to be refused.</summary>
    private string? DecodeRecord(in ReadOnlySequence<byte> record, ReadingBatchBuilder batch)
    {
        // As deep as the same record may be in an MQTT payload: the JSON batch allows 8 levels, two above its readings;
        // SenML 4, one above its records.
        var reader = new Utf8JsonReader(record, new JsonReaderOptions { MaxDepth = _format == UploadFormat.SenMl ? SenMlRecordDepth : JsonRecordDepth });
        reader.Read();
        if (_format == UploadFormat.SenMl)
        {
            return SenMlDecoder.DecodeRecord(ref reader, _senMl, batch);
        }

        JsonBatchDecoder.ReadReading(ref reader, batch);
        return null;
    }

    private void Save(ref Utf8JsonReader reader, in ReadOnlySequence<byte> buffer, ref SequencePosition consumed)
    {
        _json = reader.CurrentState;
        consumed = buffer.GetPosition(reader.BytesConsumed);
    }

    private UploadReadStatus ReadLines(in ReadOnlySequence<byte> buffer, bool isFinalBlock, ReadingBatchBuilder batch, ref SequencePosition consumed)
    {
        var remaining = buffer;
        while (true)
        {
            if (IsFull(batch))
            {
                return UploadReadStatus.BatchFull;
            }

            ReadOnlySequence<byte> line;
            if (remaining.PositionOf((byte)'\n') is { } newline)
            {
                line = remaining.Slice(0, newline);
                remaining = remaining.Slice(remaining.GetPosition(1, newline));
            }
            else if (isFinalBlock && !remaining.IsEmpty)
            {
                line = remaining;
                remaining = remaining.Slice(remaining.End);
            }
            else if (remaining.Length > maxRecordBytes)
            {
                return Fail($"a line may be at most {maxRecordBytes} bytes");
            }
            else
            {
                return isFinalBlock ? UploadReadStatus.Completed : UploadReadStatus.NeedMoreData;
            }

            if (line.Length > maxRecordBytes)
            {
                return Fail($"a line may be at most {maxRecordBytes} bytes");
            }

            if (!IsBlank(line) && !TryReadLine(line, batch))
            {
                // The line's bounds are known: refuse it alone and go on with the next.
                batch.Reject(RejectReason.MalformedRecord);
            }

            consumed = remaining.Start;
        }
    }

    /// <summary>Decodes one NDJSON line; false, having added nothing, when it is not one JSON reading object.</summary>
    private static bool TryReadLine(in ReadOnlySequence<byte> line, ReadingBatchBuilder batch)
    {
        var options = new JsonReaderOptions { MaxDepth = JsonRecordDepth };
        try
        {
            // Check the whole line first, so a broken one is refused before any of it is taken.
            var probe = new Utf8JsonReader(line, options);
            if (!probe.Read() || probe.TokenType != JsonTokenType.StartObject || !probe.TrySkip() || probe.Read())
            {
                return false;
            }

            var reader = new Utf8JsonReader(line, options);
            reader.Read();
            JsonBatchDecoder.ReadReading(ref reader, batch);
            return true;
        }
        catch (Exception exception) when (exception is JsonException or InvalidOperationException)
        {
            // Not JSON, or a string that is not valid UTF-8: ReadReading adds its reading only at the object's end.
            return false;
        }
    }

    private UploadReadStatus ReadMessages(in ReadOnlySequence<byte> buffer, bool isFinalBlock, ReadingBatchBuilder batch, ref SequencePosition consumed)
    {
        var remaining = buffer;
        while (true)
        {
            if (StopsBefore(batch, remaining, isFinalBlock, out var stop))
            {
                return stop;
            }

            var prefix = new SequenceReader<byte>(remaining);
            if (!TryReadLength(ref prefix, "a message length is not a valid varint", "a message", "", out var length, out var unread))
            {
                return unread;
            }

            // The message's bounds are known: one that cannot be read is refused alone (the decoder checks a whole
            // message before it adds any of it).
            if (!ProtobufBatchDecoder.TryDecode(remaining.Slice(prefix.Position, length), batch, out var reason))
            {
                batch.Reject(RejectReason.MalformedRecord);
                _recordError ??= $"a protobuf message of the upload could not be read: {reason}";
            }

            remaining = remaining.Slice(remaining.GetPosition(length, prefix.Position));
            consumed = remaining.Start;
        }
    }

    /// <summary>
    /// Reads one <c>VitalBatch</c> a field at a time, as it streams in: its base time, and each series as a record of its
    /// own (one that cannot be read is refused alone, its bounds known). Its sequence number is not used (an upload's
    /// resends are told reading by reading), and fields it does not know are passed over, as protobuf's parser does.
    /// </summary>
    private UploadReadStatus ReadFields(in ReadOnlySequence<byte> buffer, bool isFinalBlock, ReadingBatchBuilder batch, ref SequencePosition consumed)
    {
        const uint BaseTimeTag = (2 << 3) | 0;
        const uint SeriesTag = (3 << 3) | 2;
        var remaining = buffer;
        while (true)
        {
            if (StopsBefore(batch, remaining, isFinalBlock, out var stop))
            {
                return stop;
            }

            var field = new SequenceReader<byte>(remaining);
            if (!TryReadVarint(ref field, "malformed protobuf VitalBatch: a field's tag is not a valid varint", out var tag, out var unread))
            {
                return unread;
            }

            if (tag >> 3 is 0 or > 0x1FFF_FFFF)
            {
                return Fail($"malformed protobuf VitalBatch: field number {tag >> 3} is not a valid one");
            }

            switch (tag & 7)
            {
                case 0:
                    if (!TryReadVarint(ref field, "malformed protobuf VitalBatch: a value is not a valid varint", out var value, out var valueUnread))
                    {
                        return valueUnread;
                    }

                    if (tag == BaseTimeTag)
                    {
                        // The base time counts for every series, those before it too: canonical encoders write it first,
                        // and series already stored cannot be moved.
                        if (_seriesRead && (long)value != _baseTimeMs)
                        {
                            return Fail("malformed protobuf VitalBatch: its base_time_ms comes after a series read with another; write it before the series");
                        }

                        _baseTimeMs = (long)value;
                    }

                    break;
                case 1 or 5:
                    var size = (tag & 7) == 1 ? sizeof(ulong) : sizeof(uint);
                    if (field.Remaining < size)
                    {
                        return UploadReadStatus.NeedMoreData;
                    }

                    field.Advance(size);
                    break;
                case 2:
                    if (!TryReadLength(ref field, "malformed protobuf VitalBatch: a length is not a valid varint", "a series or other field", "; split the series", out var length, out var lengthUnread))
                    {
                        return lengthUnread;
                    }

                    field.Advance(length);
                    if (tag == SeriesTag)
                    {
                        AddSeries(remaining.Slice(0, field.Position), batch);
                    }

                    break;
                default:
                    // Groups (wire types 3 and 4) are proto2's, and no VitalBatch holds one; 6 and 7 are not defined.
                    return Fail($"malformed protobuf VitalBatch: field {tag >> 3} has wire type {tag & 7}, which an upload does not read");
            }

            remaining = remaining.Slice(field.Position);
            consumed = remaining.Start;
        }
    }

    /// <summary>Adds one series (its field as sent: tag, length, message) with the batch's base time, or refuses it alone.</summary>
    private void AddSeries(in ReadOnlySequence<byte> series, ReadingBatchBuilder batch)
    {
        // Decoded as a VitalBatch of its own, this series and the base time, by the decoder MQTT and gRPC use.
        var length = checked(1 + 10 + (int)series.Length);
        var message = ArrayPool<byte>.Shared.Rent(length);
        try
        {
            message[0] = (2 << 3) | 0;
            var written = 1;
            for (var value = (ulong)_baseTimeMs; ; value >>= 7)
            {
                if (value < 0x80)
                {
                    message[written++] = (byte)value;
                    break;
                }

                message[written++] = (byte)(value | 0x80);
            }

            series.CopyTo(message.AsSpan(written));
            written += (int)series.Length;
            if (!ProtobufBatchDecoder.TryDecode(message.AsSpan(0, written), batch, out var reason))
            {
                batch.Reject(RejectReason.MalformedRecord);
                _recordError ??= $"a series of the upload could not be read: {reason}";
            }
        }
        finally
        {
            // A patient's readings: not left in the shared pool.
            ArrayPool<byte>.Shared.Return(message, clearArray: true);
        }

        _seriesRead = true;
    }

    /// <summary>
    /// Reads the length before a length-delimited record (a message, a field) and checks that the record is at most
    /// <c>maxRecordBytes</c> and all in the input; false, with what to answer, when it is not (more data, or refused).
    /// </summary>
    private bool TryReadLength(ref SequenceReader<byte> reader, string invalid, string what, string advice, out long length, out UploadReadStatus unread)
    {
        length = 0;
        if (!TryReadVarint(ref reader, invalid, out var value, out unread))
        {
            return false;
        }

        if (value > (ulong)maxRecordBytes)
        {
            unread = Fail($"{what} may be at most {maxRecordBytes} bytes{advice}");
            return false;
        }

        length = (long)value;
        unread = UploadReadStatus.NeedMoreData;
        return reader.Remaining >= length;
    }

    /// <summary>
    /// Reads a varint; false, with what to answer, when the input ends inside it (more data) or it runs past ten bytes
    /// (refused, for <paramref name="invalid"/>).
    /// </summary>
    private bool TryReadVarint(ref SequenceReader<byte> reader, string invalid, out ulong value, out UploadReadStatus unread)
    {
        value = 0;
        for (var shift = 0; shift < 70; shift += 7)
        {
            if (!reader.TryRead(out var next))
            {
                unread = UploadReadStatus.NeedMoreData;
                return false;
            }

            value |= (ulong)(next & 0x7F) << shift;
            if ((next & 0x80) == 0)
            {
                unread = default;
                return true;
            }
        }

        unread = Fail(invalid);
        return false;
    }

    /// <summary>The first byte of <paramref name="text"/> other than JSON's white space; null when there is none.</summary>
    private static byte? FirstNonWhiteSpace(in ReadOnlySequence<byte> text)
    {
        foreach (var segment in text)
        {
            var at = segment.Span.IndexOfAnyExcept(" \t\r\n"u8);
            if (at >= 0)
            {
                return segment.Span[at];
            }
        }

        return null;
    }

    private static bool IsBlank(in ReadOnlySequence<byte> line)
    {
        foreach (var segment in line)
        {
            foreach (var b in segment.Span)
            {
                if (b is not ((byte)' ' or (byte)'\t' or (byte)'\r'))
                {
                    return false;
                }
            }
        }

        return true;
    }

    /// <summary>Whether a binary upload's next record waits: its batch is full, or the input has run out (for now, or for good).</summary>
    private bool StopsBefore(ReadingBatchBuilder batch, in ReadOnlySequence<byte> remaining, bool isFinalBlock, out UploadReadStatus stop)
    {
        if (IsFull(batch))
        {
            stop = UploadReadStatus.BatchFull;
            return true;
        }

        stop = isFinalBlock ? UploadReadStatus.Completed : UploadReadStatus.NeedMoreData;
        return remaining.IsEmpty;
    }

    /// <summary>Whether a batch's worth has been read: readings kept apart as implausible count too, as they are stored too.</summary>
    private bool IsFull(ReadingBatchBuilder batch) => batch.Count + batch.Quarantined.Count >= readingsPerBatch;

    private UploadReadStatus Fail(string error)
    {
        Error = error;
        return UploadReadStatus.Malformed;
    }

    private static string Describe(UploadFormat format) => format switch
    {
        UploadFormat.SenMl => "SenML",
        UploadFormat.JsonBatch => "JSON batch",
        UploadFormat.NdJson => "NDJSON",
        UploadFormat.Protobuf => "protobuf VitalBatch",
        _ => "protobuf stream",
    };
}
