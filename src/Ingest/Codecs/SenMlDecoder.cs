using System.Buffers;
using System.Text.Json;

namespace Telemetry.Ingest.Codecs;

/// <summary>
/// Decodes SenML JSON (RFC 8428): base name, time, unit and value carried from record to record, times in seconds,
/// times below 2^28 relative to now. A record's vital is its resolved name, or the part after the last ':' or '/'
/// (so <c>"bn":"watch-1:","n":"heart_rate"</c> names heart_rate).
/// </summary>
public static class SenMlDecoder
{
    private const int MaxNameBytes = 96;

    /// <summary>RFC 8428 §4.5.3: times below 2^28 seconds are relative to now.</summary>
    private const double RelativeTimeLimitSeconds = 268_435_456;

    public static bool TryDecode(in ReadOnlySequence<byte> payload, ReadingBatchBuilder batch, out string? error)
    {
        try
        {
            var reader = new Utf8JsonReader(payload, new JsonReaderOptions { MaxDepth = 4 });
            error = Decode(ref reader, batch) ?? JsonBatchDecoder.RequireEnd(ref reader);
        }
        catch (Exception exception) when (exception is JsonException or InvalidOperationException)
        {
            // InvalidOperationException: a string that is not valid UTF-8 or holds a lone surrogate escape.
            error = $"malformed SenML: {exception.Message}";
        }

        return error is null;
    }

    private static string? Decode(ref Utf8JsonReader reader, ReadingBatchBuilder batch)
    {
        if (!reader.Read() || reader.TokenType != JsonTokenType.StartArray)
        {
            return "SenML must be a JSON array of records";
        }

        Span<byte> baseName = stackalloc byte[MaxNameBytes];
        Span<byte> baseUnit = stackalloc byte[MaxNameBytes];
        Span<byte> name = stackalloc byte[MaxNameBytes];
        Span<byte> unit = stackalloc byte[MaxNameBytes];
        Span<byte> fullName = stackalloc byte[MaxNameBytes * 2];
        int baseNameLength = 0, baseUnitLength = 0;
        double baseTime = 0, baseValue = 0;

        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            if (reader.TokenType != JsonTokenType.StartObject)
            {
                return "each SenML record must be an object";
            }

            int nameLength = 0, unitLength = 0;
            double time = 0;
            double? value = null;
            var hasName = false;
            var badField = false;

            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                if (reader.ValueTextEquals("bn"u8))
                {
                    reader.Read();
                    baseNameLength = JsonBatchDecoder.CopyString(ref reader, baseName);
                    badField |= baseNameLength < 0;
                    baseNameLength = Math.Max(baseNameLength, 0);
                }
                else if (reader.ValueTextEquals("bt"u8))
                {
                    reader.Read();
                    badField |= !TryReadNumber(ref reader, out baseTime);
                }
                else if (reader.ValueTextEquals("bu"u8))
                {
                    reader.Read();
                    baseUnitLength = JsonBatchDecoder.CopyString(ref reader, baseUnit);
                    badField |= baseUnitLength < 0;
                    baseUnitLength = Math.Max(baseUnitLength, 0);
                }
                else if (reader.ValueTextEquals("bv"u8))
                {
                    reader.Read();
                    badField |= !TryReadNumber(ref reader, out baseValue);
                }
                else if (reader.ValueTextEquals("n"u8))
                {
                    reader.Read();
                    nameLength = JsonBatchDecoder.CopyString(ref reader, name);
                    hasName = true;
                }
                else if (reader.ValueTextEquals("u"u8))
                {
                    reader.Read();
                    unitLength = JsonBatchDecoder.CopyString(ref reader, unit);
                }
                else if (reader.ValueTextEquals("t"u8))
                {
                    reader.Read();
                    badField |= !TryReadNumber(ref reader, out time);
                }
                else if (reader.ValueTextEquals("v"u8))
                {
                    reader.Read();
                    value = TryReadNumber(ref reader, out var v) ? v : double.NaN;
                }
                else
                {
                    // vs, vb, vd, s, ut, bver and extensions: not numeric vitals; skipped.
                    reader.Read();
                    reader.Skip();
                }
            }

            if (value is null && !hasName)
            {
                // A record of base fields only.
                continue;
            }

            if (nameLength < 0)
            {
                batch.Reject(RejectReason.UnknownKind);
                continue;
            }

            if (unitLength < 0)
            {
                batch.Reject(RejectReason.UnknownUnit);
                continue;
            }

            if (value is null || badField)
            {
                batch.Reject(RejectReason.MissingValue);
                continue;
            }

            baseName[..baseNameLength].CopyTo(fullName);
            name[..nameLength].CopyTo(fullName[baseNameLength..]);
            var resolved = fullName[..(baseNameLength + nameLength)];
            var separator = resolved.LastIndexOfAny((byte)':', (byte)'/');
            var kind = separator >= 0 ? resolved[(separator + 1)..] : resolved;

            var seconds = baseTime + time;
            if (seconds < RelativeTimeLimitSeconds)
            {
                seconds += batch.NowMs / 1000.0;
            }

            var recordUnit = unitLength > 0 ? unit[..unitLength] : baseUnit[..baseUnitLength];
            batch.Add(kind, recordUnit, (long)Math.Round(seconds * 1000), baseValue + value.Value);
        }

        return null;
    }

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
