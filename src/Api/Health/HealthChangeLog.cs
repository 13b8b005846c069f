using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Telemetry.Api.Health;

/// <summary>
/// Logs each health check as its status changes, from the checks run every 30 s in the background: once when the store
/// goes away (with its description), once when it is back, rather than a line per probe of <c>/healthz</c> (whose own
/// log, under <c>Microsoft.Extensions.Diagnostics.HealthChecks.DefaultHealthCheckService</c>, the default settings keep
/// quiet). A check that is not healthy at the first run after the server started is logged then.
/// </summary>
public sealed partial class HealthChangeLog(IHostApplicationLifetime lifetime, ILogger<HealthChangeLog> logger) : IHealthCheckPublisher
{
    /// <summary>The settings' section of the background runs (<see cref="HealthCheckPublisherOptions"/>: <c>Period</c>, <c>Delay</c>).</summary>
    public const string Section = "Telemetry:Health";

    private readonly Dictionary<string, HealthStatus> _last = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();

    public Task PublishAsync(HealthReport report, CancellationToken cancellationToken)
    {
        // A server starting or stopping is not ready, as it should be, and says so itself.
        if (!lifetime.ApplicationStarted.IsCancellationRequested || lifetime.ApplicationStopping.IsCancellationRequested)
        {
            return Task.CompletedTask;
        }

        lock (_lock)
        {
            foreach (var (name, entry) in report.Entries)
            {
                var known = _last.TryGetValue(name, out var last);
                _last[name] = entry.Status;
                if (known ? last == entry.Status : entry.Status == HealthStatus.Healthy)
                {
                    continue;
                }

                // A check that threw has its exception logged with it (its stack too): what the check's own log said.
                var description = entry.Description ?? entry.Exception?.Message ?? "(no description)";
                switch (entry.Status)
                {
                    case HealthStatus.Unhealthy:
                        LogUnhealthy(logger, entry.Exception, name, description);
                        break;
                    case HealthStatus.Degraded:
                        LogDegraded(logger, entry.Exception, name, description);
                        break;
                    default:
                        LogHealthyAgain(logger, name, description);
                        break;
                }
            }
        }

        return Task.CompletedTask;
    }

    [LoggerMessage(EventId = 2601, Level = LogLevel.Error, Message = "Health check {Check} turned Unhealthy: {Description}")]
    private static partial void LogUnhealthy(ILogger logger, Exception? exception, string check, string description);

    [LoggerMessage(EventId = 2602, Level = LogLevel.Warning, Message = "Health check {Check} turned Degraded: {Description}")]
    private static partial void LogDegraded(ILogger logger, Exception? exception, string check, string description);

    [LoggerMessage(EventId = 2603, Level = LogLevel.Information, Message = "Health check {Check} is Healthy again: {Description}")]
    private static partial void LogHealthyAgain(ILogger logger, string check, string description);
}
