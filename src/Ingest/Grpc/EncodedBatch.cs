using System.Buffers;
using Google.Protobuf;
using Grpc.Core;
using Telemetry.Protos;

namespace Telemetry.Ingest.Grpc;

/// <summary>
/// A <see cref="VitalBatch"/> as the gRPC stream received it, still encoded: the stream's front door decodes it from the
/// wire format (<see cref="Codecs.ProtobufBatchDecoder"/>), as MQTT payloads are, rather than through the generated
/// parser's message objects. Its bytes are rented from the shared pool and given back, cleared, once decoded.
/// </summary>
public sealed class EncodedBatch
{
    private byte[]? _bytes;
    private int _length;

    /// <summary>Reads a request message: copies its bytes, as the transport's buffer is reused after.</summary>
    public static Marshaller<EncodedBatch> Marshaller { get; } = Marshallers.Create(
        static (batch, context) => context.Complete(batch.Bytes.ToArray()),
        static context =>
        {
            var payload = context.PayloadAsReadOnlySequence();
            var length = checked((int)payload.Length);
            var bytes = ArrayPool<byte>.Shared.Rent(length);
            payload.CopyTo(bytes);
            return new EncodedBatch { _bytes = bytes, _length = length };
        });

    /// <summary>The acks the stream sends, written as the generated code writes them.</summary>
    public static Marshaller<IngestAck> AckMarshaller { get; } = Marshallers.Create<IngestAck>(
        static (ack, context) =>
        {
            context.SetPayloadLength(ack.CalculateSize());
            ack.WriteTo(context.GetBufferWriter());
            context.Complete();
        },
        static context => IngestAck.Parser.ParseFrom(context.PayloadAsReadOnlySequence()));

    /// <summary>The encoded batch; empty once given back.</summary>
    public ReadOnlySpan<byte> Bytes => _bytes.AsSpan(0, _bytes is null ? 0 : _length);

    /// <summary>Gives the bytes back to the pool; the batch is empty after.</summary>
    public void Release()
    {
        if (_bytes is { } bytes)
        {
            _bytes = null;
            ArrayPool<byte>.Shared.Return(bytes, clearArray: true);
        }
    }
}
