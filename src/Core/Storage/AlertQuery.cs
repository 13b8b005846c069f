namespace Telemetry.Core.Storage;

/// <summary>
/// Which alerts to read: of one patient or all, raised in a time range, open only or all, at most a number; with
/// <paramref name="After"/>, only those that come after that alert in the newest-first order (raised earlier, or in
/// the same millisecond with a lower id), so that a list read page by page steps over none raised at one moment.
/// </summary>
public sealed record AlertQuery(string? PatientId, DateTimeOffset? From, DateTimeOffset? To, bool OpenOnly, int Limit, (DateTimeOffset RaisedAt, string AlertId)? After = null);
