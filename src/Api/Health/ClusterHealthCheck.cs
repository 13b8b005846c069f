using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using Telemetry.Storage.Redis;

namespace Telemetry.Api.Health;

/// <summary>In cluster mode, healthy while Redis (membership, grain state, care teams, alert history) answers a ping.</summary>
public sealed class ClusterHealthCheck(IOptions<TelemetryClusterOptions> cluster, IServiceProvider services) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        if (!cluster.Value.Enabled)
        {
            return HealthCheckResult.Healthy("one server, no cluster");
        }

        try
        {
            var latency = await (await services.GetRequiredService<RedisConnection>().DatabaseAsync()).PingAsync().WaitAsync(TimeSpan.FromSeconds(2), cancellationToken);
            return HealthCheckResult.Healthy($"cluster {cluster.Value.ClusterId}: Redis answers in {latency.TotalMilliseconds:0.0} ms");
        }
        catch (Exception exception) when (exception is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            return HealthCheckResult.Unhealthy($"cluster {cluster.Value.ClusterId}: Redis does not answer; grain state, care teams and alert history are out of reach", exception);
        }
    }
}
