using System.Buffers;
using Google.Protobuf;
using Telemetry.Core.Vitals;
using Telemetry.Protos;

namespace Telemetry.Ingest.Codecs;

/// <summary>Decodes the protobuf <see cref="VitalBatch"/> of <c>protos/telemetry.proto</c>: columnar series of time deltas and values.</summary>
public static class ProtobufBatchDecoder
{
    public static bool TryDecode(in ReadOnlySequence<byte> payload, ReadingBatchBuilder batch, out string? error)
    {
        VitalBatch message;
        try
        {
            message = VitalBatch.Parser.ParseFrom(payload);
        }
        catch (InvalidProtocolBufferException exception)
        {
            error = $"malformed protobuf VitalBatch: {exception.Message}";
            return false;
        }

        return TryDecode(message, batch, out error);
    }

    /// <summary>Adds the readings of an already parsed batch, as the gRPC stream receives them.</summary>
    public static bool TryDecode(VitalBatch message, ReadingBatchBuilder batch, out string? error)
    {
        // Check every series' shape first: a malformed batch adds nothing.
        foreach (var series in message.Series)
        {
            var pairs = VitalCatalogue.TryFindPanel(series.Kind, out _) ? 2 : 1;
            if (series.Values.Count != series.TimeDeltasMs.Count * pairs)
            {
                error = pairs == 2
                    ? $"series '{series.Kind}' has {series.TimeDeltasMs.Count} time deltas but {series.Values.Count} values; a panel needs two values per time"
                    : $"series '{series.Kind}' has {series.TimeDeltasMs.Count} time deltas but {series.Values.Count} values";
                return false;
            }
        }

        batch.Sequence = message.Seq;
        foreach (var series in message.Series)
        {
            var deltas = series.TimeDeltasMs;
            var values = series.Values;
            if (VitalCatalogue.TryFindPanel(series.Kind, out var panel))
            {
                // A panel's series holds a pair of values per time: systolic, diastolic, systolic, ...
                var time = message.BaseTimeMs;
                for (var i = 0; i < deltas.Count; i++)
                {
                    time += deltas[i];
                    batch.Add(panel.First, panel.First.FindUnit(series.Unit.AsSpan()), time, values[2 * i]);
                    batch.Add(panel.Second, panel.Second.FindUnit(series.Unit.AsSpan()), time, values[(2 * i) + 1]);
                }

                continue;
            }

            if (!VitalCatalogue.TryFind(series.Kind, out var definition))
            {
                for (var i = 0; i < values.Count; i++)
                {
                    batch.Reject(RejectReason.UnknownKind);
                }

                continue;
            }

            var unit = definition.FindUnit(series.Unit.AsSpan());
            var timestampMs = message.BaseTimeMs;
            for (var i = 0; i < values.Count; i++)
            {
                timestampMs += deltas[i];
                batch.Add(definition, unit, timestampMs, values[i]);
            }
        }

        error = null;
        return true;
    }
}
