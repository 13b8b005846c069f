using Microsoft.Extensions.Options;
using Telemetry.Core.Alerts;
using Telemetry.Ingest.Mqtt;
using Telemetry.Storage;
using Telemetry.Storage.Redis;

namespace Telemetry.Api.Alerts;

/// <summary>
/// Where the grains' stored alert events go live: the MQTT alerts topic, server-sent event streams, and the webhooks.
/// In a cluster the streams and hosted-broker MQTT subscribers of every server are served by its
/// <see cref="Cluster.AlertTail"/> instead; an external broker gets each alert once, from the server that raised it.
/// </summary>
public sealed class AlertFanOut(MqttAlertRelay mqtt, AlertBroadcaster streams, WebhookDispatcher webhooks, IOptions<TelemetryClusterOptions> cluster) : IAlertPublisher
{
    public void Publish(IReadOnlyList<AlertEvent> events)
    {
        webhooks.Notify();
        if (!cluster.Value.Enabled || mqtt.IsExternal)
        {
            foreach (var item in events)
            {
                mqtt.Publish(item);
            }
        }

        if (!cluster.Value.Enabled)
        {
            streams.Publish(events);
        }
    }
}
