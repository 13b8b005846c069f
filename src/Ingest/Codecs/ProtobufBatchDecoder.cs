using System.Buffers;
using System.Text;
using Telemetry.Core.Vitals;
using Telemetry.Protos;

namespace Telemetry.Ingest.Codecs;

/// <summary>
/// Decodes the protobuf <see cref="VitalBatch"/> of <c>protos/telemetry.proto</c>: columnar series of time deltas and values.
/// A payload is read straight from its wire format (<see cref="ProtobufBatchReader"/>), with no message objects: the
/// generated parser made a series object, two growing arrays and a string per series, about a third of what the server
/// allocated per batched MQTT message, and most of what it allocated per gRPC batch.
/// </summary>
public static class ProtobufBatchDecoder
{
    /// <summary>The most of a series' kind an error message repeats.</summary>
    private const int MaxEchoedKindBytes = 64;

    [ThreadStatic]
    private static SeriesScratch? _scratch;

    public static bool TryDecode(in ReadOnlySequence<byte> payload, ReadingBatchBuilder batch, out string? error)
    {
        if (payload.IsSingleSegment)
        {
            return TryDecode(payload.FirstSpan, batch, out error);
        }

        var length = checked((int)payload.Length);
        var whole = ArrayPool<byte>.Shared.Rent(length);
        try
        {
            payload.CopyTo(whole);
            return TryDecode(whole.AsSpan(0, length), batch, out error);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(whole, clearArray: true);
        }
    }

    /// <summary>Adds the readings of an encoded <see cref="VitalBatch"/>; false, with the reason, when it is not one.</summary>
    public static bool TryDecode(ReadOnlySpan<byte> payload, ReadingBatchBuilder batch, out string? error)
    {
        var scratch = Scratch();
        try
        {
            if (!ProtobufBatchReader.TryRead(payload, scratch, out var sequence, out var baseTimeMs, out var malformed))
            {
                // Its sequence number, if read, goes with the answer, so the device knows which batch was refused.
                batch.Sequence = sequence;
                error = $"malformed protobuf VitalBatch: {malformed}";
                return false;
            }

            return TryAdd(scratch, sequence, baseTimeMs, batch, out error);
        }
        finally
        {
            scratch.Release();
        }
    }

    private static SeriesScratch Scratch()
    {
        var scratch = _scratch ??= new SeriesScratch();
        scratch.Clear();
        return scratch;
    }

    private static bool TryAdd(SeriesScratch scratch, ulong sequence, long baseTimeMs, ReadingBatchBuilder batch, out string? error)
    {
        // Check every series' shape first: a malformed batch adds nothing (but its sequence number, for the answer).
        batch.Sequence = sequence;
        foreach (ref readonly var series in scratch.All)
        {
            var kind = scratch.Kind(series);
            var pairs = VitalCatalogue.TryFindPanel(kind, out _) ? 2 : 1;
            if (series.ValueCount != series.DeltaCount * pairs)
            {
                // Named as sent, cut short (a kind can be as long as the message, and the answer and the reject log are
                // not), its control characters shown as '?': an MQTT reason string may not hold U+0000, nor should others.
                var sent = Encoding.UTF8.GetString(kind[..Math.Min(kind.Length, MaxEchoedKindBytes)]);
                var name = string.Create(sent.Length, sent, static (shown, text) =>
                {
                    for (var i = 0; i < text.Length; i++)
                    {
                        shown[i] = char.IsControl(text[i]) ? '?' : text[i];
                    }
                }) + (kind.Length > MaxEchoedKindBytes ? "…" : "");
                error = pairs == 2
                    ? $"series '{name}' has {series.DeltaCount} time deltas but {series.ValueCount} values; a panel needs two values per time"
                    : $"series '{name}' has {series.DeltaCount} time deltas but {series.ValueCount} values";
                return false;
            }
        }

        foreach (ref readonly var series in scratch.All)
        {
            var kind = scratch.Kind(series);
            var unit = scratch.Unit(series);
            var deltas = scratch.Deltas(series);
            var values = scratch.Values(series);
            if (VitalCatalogue.TryFindPanel(kind, out var panel))
            {
                // A panel's series holds a pair of values per time: systolic, diastolic, systolic, ...
                var first = panel.First.FindUnit(unit);
                var second = panel.Second.FindUnit(unit);
                var time = baseTimeMs;
                for (var i = 0; i < deltas.Length; i++)
                {
                    time += deltas[i];
                    batch.AddPair(panel, first, second, time, values[2 * i], values[(2 * i) + 1]);
                }

                continue;
            }

            if (!VitalCatalogue.TryFind(kind, out var definition))
            {
                for (var i = 0; i < values.Length; i++)
                {
                    batch.Reject(RejectReason.UnknownKind);
                }

                continue;
            }

            var conversion = definition.FindUnit(unit);
            var timestampMs = baseTimeMs;
            for (var i = 0; i < values.Length; i++)
            {
                timestampMs += deltas[i];
                batch.Add(definition, conversion, timestampMs, values[i]);
            }
        }

        error = null;
        return true;
    }
}
