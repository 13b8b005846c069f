namespace Telemetry.Core.Storage;

/// <summary>Which alerts to read: of one patient or all, raised in a time range, open only or all, at most a number.</summary>
public sealed record AlertQuery(string? PatientId, DateTimeOffset? From, DateTimeOffset? To, bool OpenOnly, int Limit);
