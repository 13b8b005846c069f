using Microsoft.Extensions.Diagnostics.HealthChecks;
using Telemetry.Ingest.Mqtt;

namespace Telemetry.Api.Health;

/// <summary>Healthy once Kestrel has started its listeners and the MQTT broker is running.</summary>
public sealed class ListenerHealthCheck(IHostApplicationLifetime lifetime, MqttIngestEndpoint mqtt) : IHealthCheck
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

        return Task.FromResult(mqtt.IsListening
            ? HealthCheckResult.Healthy("HTTP, gRPC and MQTT listening")
            : HealthCheckResult.Unhealthy("the MQTT broker is not running"));
    }
}
