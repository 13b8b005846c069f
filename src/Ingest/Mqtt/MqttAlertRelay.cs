using System.Text.Json;
using Microsoft.Extensions.Logging;
using MQTTnet;
using MQTTnet.Protocol;
using MQTTnet.Server;
using Telemetry.Core;
using Telemetry.Core.Alerts;

namespace Telemetry.Ingest.Mqtt;

/// <summary>Publishes alert events on the hosted broker, to <c>patients/{patientId}/alerts</c> at QoS 1, as JSON.</summary>
public sealed partial class MqttAlertRelay(IngestInstruments instruments, ILogger<MqttAlertRelay> logger)
{
    /// <summary>The sender of the server's own messages: not a valid device id, so no device can pose as it.</summary>
    public const string SenderClientId = "$telemetry";

    private MqttServer? _server;

    public void Attach(MqttServer server) => _server = server;

    /// <summary>True for a message the server itself publishes, which goes to subscribers like any broker's message.</summary>
    public static bool IsFromServer(InterceptingPublishEventArgs args) => args.ClientId == SenderClientId;

    public void Publish(AlertEvent alertEvent)
    {
        if (_server is not { IsStarted: true } server)
        {
            return;
        }

        var message = new MqttApplicationMessageBuilder()
            .WithTopic(MqttTopics.PatientAlerts(alertEvent.PatientId))
            .WithPayload(JsonSerializer.SerializeToUtf8Bytes(alertEvent, TelemetryJson.Options))
            .WithContentType("application/json")
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
            .Build();
        _ = InjectAsync(server, message);
    }

    private async Task InjectAsync(MqttServer server, MqttApplicationMessage message)
    {
        try
        {
            await server.InjectApplicationMessage(new InjectedMqttApplicationMessage(message) { SenderClientId = SenderClientId });
            instruments.AlertPublished(MqttIngestEndpoint.Protocol);
        }
        catch (Exception exception)
        {
            LogPublishFailed(logger, exception, message.Topic);
        }
    }

    [LoggerMessage(EventId = 1201, Level = LogLevel.Warning, Message = "Publishing an alert to {Topic} failed")]
    private static partial void LogPublishFailed(ILogger logger, Exception exception, string topic);
}
