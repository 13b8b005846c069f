using System.ComponentModel.DataAnnotations;

namespace Telemetry.Api.Alerts;

/// <summary>Alert delivery settings (section <c>Telemetry:Alerts</c>).</summary>
public sealed class AlertOptions : IValidatableObject
{
    public const string Section = "Telemetry:Alerts";

    /// <summary>Where alert events are POSTed, each signed with its webhook's secret.</summary>
    public List<WebhookOptions> Webhooks { get; set; } = [];

    /// <summary>
    /// How old an event (by its time) may grow while its webhook fails (network, 408, 429, 5xx) before it is given up for
    /// that webhook (logged and counted; it stays in the history): until then it is tried again, and the events after it
    /// wait, so that a receiver down for a while gets them all, in order, once it is back. Tried once at least.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:01", "30.00:00:00")]
    public TimeSpan WebhookGiveUpAfter { get; set; } = TimeSpan.FromDays(1);

    /// <summary>
    /// How long an event may be answered 500 before, at each further such answer, the receiver is offered the next event
    /// of another patient and, if it takes that, the failing one once more: refused again, the failing event is the
    /// receiver's trouble alone (a patient it does not know, a payload it trips on) and is given up (logged and
    /// counted), so it does not hold every other patient's alerts back for <see cref="WebhookGiveUpAfter"/>. A receiver
    /// that is down (502, 503, 504, no answer) refuses the other patient's event too, or is never offered it, and the
    /// event is tried again as before. After a pass-over, a further 500 for an event of the same patient within the hour
    /// is told apart at once.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:01", "30.00:00:00")]
    public TimeSpan WebhookPassOverAfter { get; set; } = TimeSpan.FromMinutes(5);

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
                yield return new ValidationResult("must be a unique name of letters, digits and - _ : .", [$"Webhooks:{i}:Name"]);
            }

            if (!Uri.TryCreate(webhook.Url, UriKind.Absolute, out var url) || url.Scheme is not ("http" or "https"))
            {
                yield return new ValidationResult("must be an absolute http or https URL.", [$"Webhooks:{i}:Url"]);
            }

            if (string.IsNullOrEmpty(webhook.Secret) || webhook.Secret.Length < 16)
            {
                yield return new ValidationResult("must be at least 16 characters: it signs every delivery.", [$"Webhooks:{i}:Secret"]);
            }
        }
    }
}
