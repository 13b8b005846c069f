namespace Telemetry.Ingest.Codecs;

/// <summary>The formats of a bulk upload, read as a stream.</summary>
public enum UploadFormat
{
    /// <summary><c>application/senml+json</c>: one SenML pack (a JSON array of records).</summary>
    SenMl,

    /// <summary><c>application/json</c>: the project's JSON batch, <c>{"readings":[...]}</c>.</summary>
    JsonBatch,

    /// <summary><c>application/x-ndjson</c>: one reading object per line.</summary>
    NdJson,

    /// <summary><c>application/x-protobuf; delimited=true</c>: <c>VitalBatch</c> messages, each preceded by its length as a varint.</summary>
    DelimitedProtobuf,

    /// <summary>One <c>VitalBatch</c> of any size, read a series at a time.</summary>
    Protobuf,

    /// <summary>
    /// One payload, as on MQTT: its first byte other than white space (after a byte order mark) names its format, <c>[</c>
    /// <see cref="SenMl"/>, <c>{</c> <see cref="JsonBatch"/>, anything else <see cref="Protobuf"/>.
    /// </summary>
    Payload,
}
