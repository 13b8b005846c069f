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
}
