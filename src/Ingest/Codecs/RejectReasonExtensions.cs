namespace Telemetry.Ingest.Codecs;

/// <summary>Words for <see cref="RejectReason"/>: a tag value for metrics and a phrase for senders.</summary>
public static class RejectReasonExtensions
{
    public const int Count = (int)RejectReason.Conflict + 1;

    public static string ToTag(this RejectReason reason) => reason switch
    {
        RejectReason.UnknownKind => "unknown_kind",
        RejectReason.UnknownUnit => "unknown_unit",
        RejectReason.MissingValue => "missing_value",
        RejectReason.Implausible => "implausible",
        RejectReason.FutureTimestamp => "future_timestamp",
        RejectReason.TooOld => "too_old",
        RejectReason.MalformedRecord => "malformed_record",
        RejectReason.Conflict => "conflict",
        _ => "other",
    };

    public static string Describe(this RejectReason reason) => reason switch
    {
        RejectReason.UnknownKind => "unknown vital kind (or none given)",
        RejectReason.UnknownUnit => "unit not convertible to the vital's unit",
        RejectReason.MissingValue => "missing or non-numeric value or time (a JSON batch's time is ISO 8601 text)",
        RejectReason.Implausible => "value outside the plausible range",
        RejectReason.FutureTimestamp => "timestamp too far in the future",
        RejectReason.TooOld => "timestamp older than the backfill horizon",
        RejectReason.MalformedRecord => "record that could not be read",
        RejectReason.Conflict => "with another value already stored for the same vital and time (the first value stands)",
        _ => "invalid",
    };
}
