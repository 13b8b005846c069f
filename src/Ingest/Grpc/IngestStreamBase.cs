using Grpc.Core;
using Telemetry.Protos;

namespace Telemetry.Ingest.Grpc;

/// <summary>
/// The <c>telemetry.v1.Ingest</c> service of <c>protos/telemetry.proto</c>, bound by hand rather than from generated code
/// so that its requests arrive still encoded (<see cref="EncodedBatch"/>). The host finds <see cref="BindService"/> by
/// its attribute and binds the override of <see cref="Stream"/>; the wire contract is the generated one's.
/// </summary>
[BindServiceMethod(typeof(IngestStreamBase), nameof(BindService))]
public abstract class IngestStreamBase
{
    private static readonly Method<EncodedBatch, IngestAck> StreamMethod = new(
        MethodType.DuplexStreaming,
        TelemetryReflection.Descriptor.Services.Single(service => service.Name == "Ingest").FullName,
        nameof(Stream),
        EncodedBatch.Marshaller,
        EncodedBatch.AckMarshaller);

    /// <summary><c>rpc Stream(stream VitalBatch) returns (stream IngestAck)</c>.</summary>
    public abstract Task Stream(IAsyncStreamReader<EncodedBatch> requestStream, IServerStreamWriter<IngestAck> responseStream, ServerCallContext context);

    public static void BindService(ServiceBinderBase binder, IngestStreamBase? service) =>
        binder.AddMethod(StreamMethod, service is null ? null : service.Stream);
}
