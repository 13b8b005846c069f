namespace Telemetry.Core.Alerts;

/// <summary>A patient's alert rules, with the template they came from when they came from one.</summary>
[GenerateSerializer, Immutable]
public sealed record AlertRuleSet(AlertRule[] Rules, string? Template = null)
{
    public static AlertRuleSet Empty { get; } = new([]);
}
