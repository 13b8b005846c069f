using System.ComponentModel.DataAnnotations;

namespace Telemetry.Ingest.Mqtt;

/// <summary>
/// External broker mode, bound from <c>Telemetry:Ingest:ExternalBroker</c>. With <see cref="Host"/> set, devices publish
/// to that broker (Mosquitto, EMQX, HiveMQ), which signs them in and keeps each to its own topic; the server hosts no
/// MQTT listener and instead reads <c>devices/+/vitals</c> through a shared subscription, QoS 1, in a persistent
/// session, acknowledging each message to the broker only once it is committed. Servers with the same
/// <see cref="SharedGroup"/> share the messages between them.
/// </summary>
public sealed class ExternalBrokerOptions : IValidatableObject
{
    public const string Section = "Telemetry:Ingest:ExternalBroker";

    /// <summary>The broker's host name or address. Unset (the default): the server hosts MQTT itself.</summary>
    public string? Host { get; set; }

    /// <summary>The broker's port; unset, MQTT's own: 8883 with <see cref="UseTls"/>, else 1883 (see <see cref="BrokerPort"/>).</summary>
    [Range(1, 65535)]
    public int? Port { get; set; }

    /// <summary>Connect with TLS (the broker's certificate checked against the machine's trusted roots).</summary>
    public bool UseTls { get; set; }

    /// <summary>The port connected to: <see cref="Port"/>, or MQTT's own for TLS or not.</summary>
    public int BrokerPort => Port ?? (UseTls ? 8883 : 1883);

    /// <summary>The server's own account at the broker, allowed to subscribe to every device's readings.</summary>
    public string? Username { get; set; }

    /// <summary>Its password. Never logged.</summary>
    public string? Password { get; set; }

    /// <summary>
    /// The server's client id: its persistent session at the broker. Required: it must stay the same across restarts
    /// (messages the broker queued for this server wait in that session) and differ between servers.
    /// </summary>
    public string? ClientId { get; set; }

    /// <summary>The shared subscription's group: servers in one group share the devices' messages. Default <c>telemetry</c>.</summary>
    [RegularExpression("^[A-Za-z0-9_.-]{1,64}$", ErrorMessage = "Telemetry:Ingest:ExternalBroker:SharedGroup is 1 to 64 letters, digits and - _ .")]
    public string SharedGroup { get; set; } = "telemetry";

    /// <summary>How long the broker keeps the session (and the messages queued in it) while the server is away. Default one day.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "49710.00:00:00")]
    public TimeSpan SessionExpiry { get; set; } = TimeSpan.FromDays(1);

    /// <summary>The most messages the broker sends before the first of them is acknowledged (MQTT 5 receive maximum). Default 256.</summary>
    [Range(1, 65535)]
    public int InFlight { get; set; } = 256;

    public bool Enabled => !string.IsNullOrWhiteSpace(Host);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (Enabled && string.IsNullOrWhiteSpace(ClientId))
        {
            yield return new ValidationResult(
                $"{Section}:ClientId is required with an external broker: a name for this server that stays the same across restarts (its session at the broker) and differs between servers.",
                [nameof(ClientId)]);
        }

        if (Password is not null && Username is null)
        {
            yield return new ValidationResult($"{Section}:Password is set without {Section}:Username.", [nameof(Password)]);
        }
    }
}
