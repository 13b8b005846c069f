using System.Buffers;
using System.Text.Json;

namespace Telemetry.Ingest.Codecs;

/// <summary>
/// Decodes SenML JSON (RFC 8428): base name, time, unit and value carried from record to record, times in seconds,
/// times below 2^28 relative to now. A record's vital is its resolved name, or the part after the last ':' or '/'
/// (so <c>"bn":"watch-1:","n":"heart_rate"</c> names heart_rate). A field given as <c>null</c> is absent, as serializers
/// write a field they have no value for.
/// </summary>
public static class SenMlDecoder
{
    /// <summary>RFC 8428 §4.5.3: times below 2^28 seconds are relative to now.</summary>
    private const double RelativeTimeLimitSeconds = 268_435_456;

    /// <summary>The SenML version this decoder understands (RFC 8428's default, 10).</summary>
    private const int SupportedVersion = 10;

    [ThreadStatic]
    private static SenMlContext? _contextOfThread;

    public static bool TryDecode(in ReadOnlySequence<byte> payload, ReadingBatchBuilder batch, out string? error)
    {
        var context = _contextOfThread ??= new SenMlContext();
        context.Reset();
        try
        {
            var reader = new Utf8JsonReader(payload, new JsonReaderOptions { MaxDepth = 4 });
            error = Decode(ref reader, context, batch) ?? JsonBatchDecoder.RequireEnd(ref reader);
        }
        catch (Exception exception) when (exception is JsonException or InvalidOperationException)
        {
            // InvalidOperationException: a string that is not valid UTF-8 or holds a lone surrogate escape.
            error = $"malformed SenML: {exception.Message}";
        }

        return error is null;
    }

    private static string? Decode(ref Utf8JsonReader reader, SenMlContext context, ReadingBatchBuilder batch)
    {
        if (!reader.Read() || reader.TokenType != JsonTokenType.StartArray)
        {
            return "SenML must be a JSON array of records";
        }

        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            if (DecodeRecord(ref reader, context, batch) is { } error)
            {
                return error;
            }
        }

        return null;
    }

    /// <summary>
    /// Decodes the record whose start the reader is on into <paramref name="batch"/>, updating the base fields in
    /// <paramref name="context"/>. Returns an error when the pack may not be used at all (a must-understand field, a
    /// later <c>bver</c>); a bad record, one that is not an object too, is counted.
    /// </summary>
    public static string? DecodeRecord(ref Utf8JsonReader reader, SenMlContext context, ReadingBatchBuilder batch)
    {
        if (reader.TokenType != JsonTokenType.StartObject)
        {
            // Refused alone (counted): the records after it are read on.
            batch.Reject(RejectReason.MalformedRecord);
            reader.Skip();
            return null;
        }

        Span<byte> name = stackalloc byte[SenMlContext.MaxNameBytes];
        Span<byte> unit = stackalloc byte[SenMlContext.MaxNameBytes];
        Span<byte> fullName = stackalloc byte[SenMlContext.MaxBaseNameBytes + SenMlContext.MaxNameBytes];
        int nameLength = 0, unitLength = 0;
        double time = 0;
        double? value = null;
        var hasName = false;
        var badField = false;
        var badBase = false;

        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            if (reader.ValueTextEquals("bn"u8))
            {
                reader.Read();
                if (reader.TokenType == JsonTokenType.Null)
                {
                    continue;
                }

                // A base name that is not text costs its own record; later ones name their vital themselves (the
                // kind is the part after the last ':' or '/'), or name none and are refused as unknown.
                var length = JsonBatchDecoder.CopyString(ref reader, context.BaseName);
                badBase |= length < 0;
                context.BaseNameLength = Math.Max(length, 0);
            }
            else if (reader.ValueTextEquals("bt"u8))
            {
                reader.Read();
                if (reader.TokenType == JsonTokenType.Null)
                {
                    continue;
                }

                context.BaseTimeUnreadable = !TryReadNumber(ref reader, out var baseTime);
                context.BaseTime = baseTime;
            }
            else if (reader.ValueTextEquals("bu"u8))
            {
                reader.Read();
                if (reader.TokenType == JsonTokenType.Null)
                {
                    continue;
                }

                var length = JsonBatchDecoder.CopyString(ref reader, context.BaseUnit);
                badBase |= length < 0;
                context.BaseUnitUnreadable = length < 0;
                context.BaseUnitLength = Math.Max(length, 0);
            }
            else if (reader.ValueTextEquals("bv"u8))
            {
                reader.Read();
                if (reader.TokenType == JsonTokenType.Null)
                {
                    continue;
                }

                context.BaseValueUnreadable = !TryReadNumber(ref reader, out var baseValue);
                context.BaseValue = baseValue;
            }
            else if (reader.ValueTextEquals("n"u8))
            {
                reader.Read();
                if (reader.TokenType == JsonTokenType.Null)
                {
                    continue;
                }

                nameLength = JsonBatchDecoder.CopyString(ref reader, name);
                hasName = true;
            }
            else if (reader.ValueTextEquals("u"u8))
            {
                reader.Read();
                if (reader.TokenType == JsonTokenType.Null)
                {
                    continue;
                }

                unitLength = JsonBatchDecoder.CopyString(ref reader, unit);
            }
            else if (reader.ValueTextEquals("t"u8))
            {
                reader.Read();
                if (reader.TokenType == JsonTokenType.Null)
                {
                    continue;
                }

                badField |= !TryReadNumber(ref reader, out time);
            }
            else if (reader.ValueTextEquals("v"u8))
            {
                reader.Read();
                if (reader.TokenType == JsonTokenType.Null)
                {
                    continue;
                }

                value = TryReadNumber(ref reader, out var v) ? v : double.NaN;
            }
            else if (reader.ValueTextEquals("bver"u8))
            {
                reader.Read();
                if (reader.TokenType != JsonTokenType.Null && (!TryReadNumber(ref reader, out var version) || version > SupportedVersion))
                {
                    return $"SenML version (bver) {SupportedVersion} or below is understood here";
                }
            }
            else if (IsMustUnderstand(ref reader))
            {
                // A must-understand field (RFC 8428 §4.4): a pack with one not understood is not used at all.
                return "the pack has a must-understand SenML field (its name ends with '_') that is not understood here";
            }
            else
            {
                // vs, vb, vd, s, ut and extensions: not numeric vitals; skipped.
                reader.Read();
                reader.Skip();
            }
        }

        if (context.BaseTimeUnreadable || context.BaseValueUnreadable)
        {
            // This record and every one after it depend on a base field that could not be read.
            batch.Reject(RejectReason.MalformedRecord);
            return null;
        }

        if (value is null && !hasName)
        {
            // A record of base fields only.
            return null;
        }

        if (nameLength < 0)
        {
            batch.Reject(RejectReason.UnknownKind);
            return null;
        }

        if (unitLength < 0 || (unitLength == 0 && context.BaseUnitUnreadable))
        {
            // Its unit, or the base unit it would take (not the canonical one in its place), could not be read.
            batch.Reject(RejectReason.UnknownUnit);
            return null;
        }

        if (badBase)
        {
            // A base name or unit that is not text: the record carrying it could not be read as sent (later ones may name
            // their vital and unit themselves). Not a missing value, which would send its maker looking in the wrong place.
            batch.Reject(RejectReason.MalformedRecord);
            return null;
        }

        if (value is null || badField)
        {
            batch.Reject(RejectReason.MissingValue);
            return null;
        }

        var baseNameLength = context.BaseNameLength;
        context.BaseName.AsSpan(0, baseNameLength).CopyTo(fullName);
        name[..nameLength].CopyTo(fullName[baseNameLength..]);
        var resolved = fullName[..(baseNameLength + nameLength)];
        var separator = resolved.LastIndexOfAny((byte)':', (byte)'/');
        var kind = separator >= 0 ? resolved[(separator + 1)..] : resolved;

        var seconds = context.BaseTime + time;
        if (seconds < RelativeTimeLimitSeconds)
        {
            seconds += batch.NowMs / 1000.0;
            batch.UsedRelativeTime = true;
        }

        var recordUnit = unitLength > 0 ? unit[..unitLength] : context.BaseUnit.AsSpan(0, context.BaseUnitLength);
        // Cut to the millisecond, as an ISO 8601 time is (a JSON batch's, an upload's): the same moment sent in either
        // form is one reading. First to the microsecond, past which a double's seconds hold no more than noise.
        batch.Add(kind, recordUnit, (long)Math.Floor(Math.Round(seconds * 1_000_000) / 1000), context.BaseValue + value.Value);
        return null;
    }

    private static bool IsMustUnderstand(ref Utf8JsonReader reader) => reader.HasValueSequence
        ? reader.ValueSequence.Length > 0 && reader.ValueSequence.Slice(reader.ValueSequence.Length - 1).FirstSpan[0] == (byte)'_'
        : reader.ValueSpan is [.., (byte)'_'];

    private static bool TryReadNumber(ref Utf8JsonReader reader, out double number)
    {
        if (reader.TokenType == JsonTokenType.Number && reader.TryGetDouble(out number))
        {
            return true;
        }

        reader.Skip();
        number = 0;
        return false;
    }
}
