using System.ComponentModel.DataAnnotations;

namespace Telemetry.Api.Alerts;

/// <summary>Alert delivery settings (section <c>Telemetry:Alerts</c>).</summary>
public sealed class AlertOptions : IValidatableObject
{
    public const string Section = "Telemetry:Alerts";

    /// <summary>Where alert events are POSTed, each signed with its webhook's secret.</summary>
    public List<WebhookOptions> Webhooks { get; set; } = [];

    /// <summary>How many times a webhook delivery is tried before the event is given up for that webhook (it stays in the history).</summary>
    [Range(1, 100)]
    public int WebhookMaxAttempts { get; set; } = 10;

    /// <summary>The longest wait between two attempts; waits double from one second up to this.</summary>
    [Range(1, 3600)]
    public int WebhookMaxBackoffSeconds { get; set; } = 60;

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < Webhooks.Count; i++)
        {
            var webhook = Webhooks[i];
            if (string.IsNullOrWhiteSpace(webhook.Name) || !Core.Identifier.IsValid(webhook.Name) || !names.Add(webhook.Name))
            {
                yield return new ValidationResult($"Webhooks:{i}:Name must be a unique name of letters, digits and - _ : .");
            }

            if (!Uri.TryCreate(webhook.Url, UriKind.Absolute, out var url) || url.Scheme is not ("http" or "https"))
            {
                yield return new ValidationResult($"Webhooks:{i}:Url must be an absolute http or https URL.");
            }

            if (string.IsNullOrEmpty(webhook.Secret) || webhook.Secret.Length < 16)
            {
                yield return new ValidationResult($"Webhooks:{i}:Secret must be at least 16 characters: it signs every delivery.");
            }
        }
    }
}
