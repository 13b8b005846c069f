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

    /// <summary><c>application/x-protobuf</c>: <c>VitalBatch</c> messages, each preceded by its length as a varint.</summary>
    DelimitedProtobuf,
}
