using Telemetry.Core.Alerts;

namespace Telemetry.Api.Alerts;

/// <summary>The body of PUT alert-rules and of a replay: rules, or a template's name, or a template to start from plus rules.</summary>
public sealed record AlertRulesRequest(AlertRule[]? Rules, string? Template, DateTimeOffset? From = null, DateTimeOffset? To = null);
