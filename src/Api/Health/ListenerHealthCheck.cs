using Microsoft.Extensions.Diagnostics.HealthChecks;
using Telemetry.Ingest.Mqtt;

namespace Telemetry.Api.Health;

/// <summary>Healthy once Kestrel has started its listeners and the MQTT broker is running (or, with an external broker, once connected to it).</summary>
public sealed class ListenerHealthCheck(IHostApplicationLifetime lifetime, MqttIngestEndpoint mqtt, ExternalBrokerIngest broker) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        if (!lifetime.ApplicationStarted.IsCancellationRequested)
        {
            return Task.FromResult(HealthCheckResult.Unhealthy("the listeners are starting"));
        }

        if (lifetime.ApplicationStopping.IsCancellationRequested)
        {
            return Task.FromResult(HealthCheckResult.Unhealthy("the server is stopping"));
        }

        if (broker.Enabled)
        {
            return Task.FromResult(broker.IsConnected
                ? HealthCheckResult.Healthy("HTTP and gRPC listening; reading devices from the external MQTT broker")
                : HealthCheckResult.Unhealthy("not connected to the external MQTT broker"));
        }

        return Task.FromResult(mqtt.IsListening
            ? HealthCheckResult.Healthy("HTTP, gRPC and MQTT listening")
            : HealthCheckResult.Unhealthy("the MQTT broker is not running"));
    }
}
