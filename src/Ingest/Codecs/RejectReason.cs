namespace Telemetry.Ingest.Codecs;

/// <summary>Why a single reading was refused. The names are the metric tag values.</summary>
public enum RejectReason
{
    UnknownKind,
    UnknownUnit,
    MissingValue,
    Implausible,
    FutureTimestamp,
    TooOld,

    /// <summary>A record of a stream (an NDJSON line, a delimited protobuf message) that could not be read at all.</summary>
    MalformedRecord,

    /// <summary>
    /// Another value is stored for the reading's device, vital and time: the first stands (what was acknowledged is never
    /// replaced). Found at commit, not by the decoder.
    /// </summary>
    Conflict,
}
