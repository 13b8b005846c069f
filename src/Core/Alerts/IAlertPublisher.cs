namespace Telemetry.Core.Alerts;

/// <summary>Sends stored alert events on to whoever listens live (MQTT subscribers, server-sent event streams, webhooks).</summary>
public interface IAlertPublisher
{
    /// <summary>Hands over events that are stored (they carry their positions). Must not block: delivery happens elsewhere.</summary>
    void Publish(IReadOnlyList<AlertEvent> events);
}
