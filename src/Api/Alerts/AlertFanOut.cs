using Telemetry.Core.Alerts;
using Telemetry.Ingest.Mqtt;

namespace Telemetry.Api.Alerts;

/// <summary>Where the grains' stored alert events go live: the MQTT alerts topic, server-sent event streams, and the webhooks.</summary>
public sealed class AlertFanOut(MqttAlertRelay mqtt, AlertBroadcaster streams, WebhookDispatcher webhooks) : IAlertPublisher
{
    public void Publish(IReadOnlyList<AlertEvent> events)
    {
        foreach (var item in events)
        {
            mqtt.Publish(item);
        }

        streams.Publish(events);
        webhooks.Notify();
    }
}
