namespace Telemetry.Api.Alerts;

/// <summary>The body of an acknowledgement or snooze: who did it, and for a snooze how many minutes.</summary>
public sealed record AlertActionRequest(string? By = null, double? Minutes = null);
