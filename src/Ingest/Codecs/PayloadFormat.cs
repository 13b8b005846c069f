namespace Telemetry.Ingest.Codecs;

/// <summary>The payload formats a device may send, told apart by the first byte.</summary>
public enum PayloadFormat
{
    /// <summary>First byte <c>[</c>: SenML JSON (RFC 8428).</summary>
    SenMl,

    /// <summary>First byte <c>{</c>: the project's JSON batch.</summary>
    Json,

    /// <summary>Anything else: the protobuf <c>VitalBatch</c>.</summary>
    Protobuf,
}
