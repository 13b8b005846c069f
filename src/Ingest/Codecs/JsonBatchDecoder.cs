using System.Buffers;
using System.Text.Json;
using Telemetry.Core.Vitals;

namespace Telemetry.Ingest.Codecs;

/// <summary>
/// Decodes the project's JSON batch: <c>{"seq":42,"readings":[{"kind":"heart_rate","time":"2026-11-24T10:00:00Z","value":72,"unit":"/min"}]}</c>.
/// A reading whose fields are wrong is rejected alone; a payload that is not this JSON is refused whole. A time without
/// an offset is UTC (never the server's own time zone). An optional field given as <c>null</c> (<c>"unit":null</c>,
/// <c>"seq":null</c>, as serializers write a field they have no value for) is absent; a required one so given is missing.
/// </summary>
public static class JsonBatchDecoder
{
    private const int MaxNameBytes = 64;

    public static bool TryDecode(in ReadOnlySequence<byte> payload, ReadingBatchBuilder batch, out string? error)
    {
        try
        {
            var reader = new Utf8JsonReader(payload, new JsonReaderOptions { MaxDepth = 8 });
            error = Decode(ref reader, batch) ?? RequireEnd(ref reader);
        }
        catch (Exception exception) when (exception is JsonException or InvalidOperationException)
        {
            // InvalidOperationException: a string that is not valid UTF-8 or holds a lone surrogate escape.
            error = $"malformed JSON batch: {exception.Message}";
        }

        return error is null;
    }

    private static string? Decode(ref Utf8JsonReader reader, ReadingBatchBuilder batch)
    {
        if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
        {
            return "a JSON batch must be an object";
        }

        var sawReadings = false;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            if (reader.ValueTextEquals("seq"u8))
            {
                reader.Read();
                if (reader.TokenType == JsonTokenType.Null)
                {
                    continue;
                }

                if (reader.TokenType != JsonTokenType.Number || !reader.TryGetUInt64(out var seq))
                {
                    return "\"seq\" must be a non-negative integer";
                }

                batch.Sequence = seq;
            }
            else if (reader.ValueTextEquals("readings"u8))
            {
                reader.Read();
                if (reader.TokenType != JsonTokenType.StartArray)
                {
                    return "\"readings\" must be an array";
                }

                sawReadings = true;
                while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
                {
                    if (reader.TokenType != JsonTokenType.StartObject)
                    {
                        // Refused alone (counted): its neighbours are read on.
                        batch.Reject(RejectReason.MalformedRecord);
                        reader.Skip();
                        continue;
                    }

                    ReadReading(ref reader, batch);
                }
            }
            else
            {
                reader.Read();
                reader.Skip();
            }
        }

        if (reader.TokenType != JsonTokenType.EndObject)
        {
            return "a JSON batch must be an object";
        }

        return sawReadings ? null : "a JSON batch needs a \"readings\" array";
    }

    /// <summary>Decodes the reading object whose start the reader is on; a bad reading is counted in <paramref name="batch"/>.</summary>
    public static void ReadReading(ref Utf8JsonReader reader, ReadingBatchBuilder batch)
    {
        Span<byte> kind = stackalloc byte[MaxNameBytes];
        Span<byte> unit = stackalloc byte[MaxNameBytes];
        int kindLength = -1, unitLength = 0;
        long? timestampMs = null;
        var value = double.NaN;
        var second = double.NaN;
        var pair = false;

        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            if (reader.ValueTextEquals("kind"u8))
            {
                reader.Read();
                kindLength = CopyString(ref reader, kind);
            }
            else if (reader.ValueTextEquals("unit"u8))
            {
                reader.Read();
                unitLength = reader.TokenType == JsonTokenType.Null ? 0 : CopyString(ref reader, unit);
            }
            else if (reader.ValueTextEquals("time"u8))
            {
                reader.Read();
                if (reader.TokenType == JsonTokenType.String && TryReadTime(ref reader, out var time))
                {
                    timestampMs = time;
                }
                else
                {
                    reader.Skip();
                }
            }
            else if (reader.ValueTextEquals("value"u8))
            {
                reader.Read();
                if (reader.TokenType == JsonTokenType.StartArray)
                {
                    // A panel's pair of values, such as blood pressure [systolic, diastolic].
                    pair = TryReadPair(ref reader, out value, out second);
                }
                else if (reader.TokenType != JsonTokenType.Number || !reader.TryGetDouble(out value))
                {
                    reader.Skip();
                    value = double.NaN;
                }
            }
            else
            {
                reader.Read();
                reader.Skip();
            }
        }

        if (kindLength < 0)
        {
            batch.Reject(RejectReason.UnknownKind);
        }
        else if (unitLength < 0)
        {
            batch.Reject(RejectReason.UnknownUnit);
        }
        else if (timestampMs is null || double.IsNaN(value))
        {
            batch.Reject(RejectReason.MissingValue);
        }
        else if (VitalCatalogue.TryFindPanel(kind[..kindLength], out var panel))
        {
            if (!pair)
            {
                batch.Reject(RejectReason.MissingValue);
                return;
            }

            batch.AddPair(panel, panel.First.FindUnit(unit[..unitLength]), panel.Second.FindUnit(unit[..unitLength]), timestampMs.Value, value, second);
        }
        else if (pair)
        {
            batch.Reject(RejectReason.MissingValue);
        }
        else
        {
            batch.Add(kind[..kindLength], unit[..unitLength], timestampMs.Value, value);
        }
    }

    /// <summary>
    /// The ISO 8601 time of the current string token, in Unix milliseconds: with its offset (or Z) as given, and as UTC
    /// without one. (<see cref="Utf8JsonReader.TryGetDateTimeOffset"/> alone would take a time without an offset as the
    /// server's local time.)
    /// </summary>
    private static bool TryReadTime(ref Utf8JsonReader reader, out long timestampMs)
    {
        timestampMs = 0;
        if (HasOffset(ref reader))
        {
            // One parse, with the offset as given (Z, +hh:mm): the common case.
            if (!reader.TryGetDateTimeOffset(out var withOffset))
            {
                return false;
            }

            timestampMs = withOffset.ToUnixTimeMilliseconds();
            return true;
        }

        if (!reader.TryGetDateTime(out var time))
        {
            return false;
        }

        timestampMs = new DateTimeOffset(DateTime.SpecifyKind(time, DateTimeKind.Utc)).ToUnixTimeMilliseconds();
        return true;
    }

    /// <summary>Whether the current string token is a time with an offset: it ends with Z, or its time part has a sign.</summary>
    private static bool HasOffset(ref Utf8JsonReader reader)
    {
        if (reader.HasValueSequence || reader.ValueIsEscaped)
        {
            // Rare: parsed for its kind instead (a time without an offset reads as Unspecified, one with it as Local).
            return !reader.TryGetDateTime(out var parsed) || parsed.Kind != DateTimeKind.Unspecified;
        }

        var text = reader.ValueSpan;
        if (text.Length == 0)
        {
            return true;
        }

        if (text[^1] is (byte)'Z' or (byte)'z')
        {
            return true;
        }

        var clock = text.IndexOfAny((byte)'T', (byte)'t');
        return clock >= 0 && text[clock..].IndexOfAny((byte)'+', (byte)'-') >= 0;
    }

    /// <summary>Reads an array of exactly two numbers; anything else is skipped and reads as no value.</summary>
    private static bool TryReadPair(ref Utf8JsonReader reader, out double first, out double second)
    {
        first = second = double.NaN;
        var count = 0;
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            if (reader.TokenType == JsonTokenType.Number && count < 2 && reader.TryGetDouble(out var number))
            {
                if (count == 0)
                {
                    first = number;
                }
                else
                {
                    second = number;
                }
            }
            else
            {
                reader.Skip();
                count = 3;
            }

            count++;
        }

        if (count != 2)
        {
            first = second = double.NaN;
            return false;
        }

        return true;
    }

    /// <summary>Refuses anything after the first JSON value: a second batch in one payload would otherwise go unseen.</summary>
    internal static string? RequireEnd(ref Utf8JsonReader reader) =>
        reader.Read() ? "unexpected content after the end of the payload" : null;

    /// <summary>
    /// Unescapes the current string token into <paramref name="destination"/>; -1 when it is not a short string, or
    /// not one that unescapes to text (a lone surrogate escape such as <c>\ud800</c>): that field alone is wrong.
    /// </summary>
    internal static int CopyString(ref Utf8JsonReader reader, scoped Span<byte> destination)
    {
        if (reader.TokenType != JsonTokenType.String)
        {
            reader.Skip();
            return -1;
        }

        var length = reader.HasValueSequence ? reader.ValueSequence.Length : reader.ValueSpan.Length;
        if (length > destination.Length)
        {
            return -1;
        }

        try
        {
            return reader.CopyString(destination);
        }
        catch (InvalidOperationException)
        {
            return -1;
        }
    }
}
