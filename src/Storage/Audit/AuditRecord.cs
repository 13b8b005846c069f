namespace Telemetry.Storage.Audit;

/// <summary>
/// One access to a patient's record: who, in which role, which patient, what (method and path), when, and the outcome
/// (the status answered). <see cref="Hash"/> covers every other field and the previous record's hash, so changing,
/// removing or reordering a record breaks the chain from there on.
/// </summary>
public sealed record AuditRecord(
    long Seq,
    DateTimeOffset At,
    string Actor,
    string Role,
    string? PatientId,
    string Action,
    int Status,
    string Outcome,
    string Previous,
    string Hash);
