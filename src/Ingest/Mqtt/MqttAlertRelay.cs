using System.Text.Json;
using Microsoft.Extensions.Logging;
using MQTTnet;
using MQTTnet.Protocol;
using MQTTnet.Server;
using Telemetry.Core;
using Telemetry.Core.Alerts;

namespace Telemetry.Ingest.Mqtt;

/// <summary>
/// Publishes alert events to <c>patients/{patientId}/alerts</c> at QoS 1, as JSON: on the hosted broker, or on the
/// external broker the server reads devices from.
/// </summary>
public sealed partial class MqttAlertRelay(IngestInstruments instruments, ILogger<MqttAlertRelay> logger)
{
    /// <summary>The sender of the server's own messages: not a valid device id, so no device can pose as it.</summary>
    public const string SenderClientId = "$telemetry";

    private Func<MqttApplicationMessage, Task>? _publish;

    /// <summary>True when alerts go to an external broker (so one server publishes each, not every server of a cluster).</summary>
    public bool IsExternal { get; private set; }

    public void Attach(MqttServer server) =>
        _publish = message => server.IsStarted
            ? server.InjectApplicationMessage(new InjectedMqttApplicationMessage(message) { SenderClientId = SenderClientId })
            : Task.CompletedTask;

    /// <summary>Publishes through <paramref name="publish"/> (the external broker's client) instead of a hosted broker.</summary>
    public void AttachExternal(Func<MqttApplicationMessage, Task> publish)
    {
        _publish = publish;
        IsExternal = true;
    }

    /// <summary>True for a message the server itself publishes, which goes to subscribers like any broker's message.</summary>
    public static bool IsFromServer(InterceptingPublishEventArgs args) => args.ClientId == SenderClientId;

    public void Publish(AlertEvent alertEvent)
    {
        if (_publish is not { } publish)
        {
            return;
        }

        var message = new MqttApplicationMessageBuilder()
            .WithTopic(MqttTopics.PatientAlerts(alertEvent.PatientId))
            .WithPayload(JsonSerializer.SerializeToUtf8Bytes(alertEvent, TelemetryJson.Options))
            .WithContentType("application/json")
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
            .Build();
        _ = PublishAsync(publish, message);
    }

    private async Task PublishAsync(Func<MqttApplicationMessage, Task> publish, MqttApplicationMessage message)
    {
        try
        {
            await publish(message);
            instruments.AlertPublished(MqttIngestEndpoint.Protocol);
        }
        catch (Exception exception)
        {
            LogPublishFailed(logger, exception, message.Topic);
        }
    }

    [LoggerMessage(EventId = 1204, Level = LogLevel.Warning, Message = "Publishing an alert to {Topic} failed")]
    private static partial void LogPublishFailed(ILogger logger, Exception exception, string topic);
}
