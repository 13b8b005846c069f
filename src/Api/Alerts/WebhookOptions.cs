namespace Telemetry.Api.Alerts;

/// <summary>One webhook: a name (its delivery position is kept under it), a URL and the secret its deliveries are signed with.</summary>
public sealed class WebhookOptions
{
    public string Name { get; set; } = string.Empty;

    public string Url { get; set; } = string.Empty;

    public string Secret { get; set; } = string.Empty;
}
