using System.Diagnostics.Metrics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Telemetry.Core.Rollups;
using Telemetry.Core.Storage;

namespace Telemetry.Storage.Retention;

/// <summary>
/// Deletes what is older than each resolution's retention, and the alert history older than its own, on start and then
/// every <see cref="RetentionOptions.Interval"/>.
/// </summary>
public sealed partial class RetentionService(
    IRawSeriesStore rawStore,
    IRollupStore rollupStore,
    IAlertStore alertStore,
    IOptions<RetentionOptions> options,
    TimeProvider timeProvider,
    IMeterFactory meterFactory,
    ILogger<RetentionService> logger) : BackgroundService
{
    public const string MeterName = "Telemetry";

    private readonly Counter<long> _deleted = meterFactory.Create(MeterName).CreateCounter<long>(
        "telemetry.retention.deleted", "{row}", "Readings, rollup windows and alert history deleted by retention, by resolution (alerts: events and alerts).");

    private readonly Counter<long> _failures = meterFactory.Create(MeterName).CreateCounter<long>(
        "telemetry.retention.failures", "{run}", "Retention steps that failed, by resolution; each is tried again at the next interval.");

    /// <summary>
    /// Applies every resolution's retention once; returns how many rows went, by resolution name. A step that fails
    /// (a store's delete timing out, say) is logged and left for the next interval; the steps after it still run.
    /// </summary>
    public async Task<IReadOnlyDictionary<string, long>> ApplyAsync(CancellationToken cancellationToken = default)
    {
        var retention = options.Value;
        var now = timeProvider.GetUtcNow();
        var deleted = new Dictionary<string, long>();
        async Task StepAsync(string name, Func<Task<long>> delete)
        {
            try
            {
                deleted[name] = await delete();
            }
            catch (Exception exception) when (!cancellationToken.IsCancellationRequested)
            {
                // Nothing is lost by a late deletion: it is tried again at the next interval. Counted, so that one
                // failing run after run (data kept past the policy, the disk filling) can be alerted on.
                _failures.Add(1, new KeyValuePair<string, object?>("resolution", name));
                LogFailed(logger, exception, name);
            }
        }

        if (retention.RawDays > 0)
        {
            await StepAsync("raw", () => rawStore.DeleteBeforeAsync(now.AddDays(-retention.RawDays).ToUnixTimeMilliseconds(), cancellationToken));
        }

        foreach (var (resolution, days) in new[] { (Resolution.Minute, retention.MinuteRollupDays), (Resolution.Hour, retention.HourRollupDays), (Resolution.Day, retention.DayRollupDays) })
        {
            if (days > 0)
            {
                // Whole windows only: a window goes when all of it is older than the retention.
                var cutoff = resolution.WindowStart(now.AddDays(-days).ToUnixTimeMilliseconds());
                await StepAsync(resolution.ToWireName(), () => rollupStore.DeleteBeforeAsync(resolution, cutoff, cancellationToken));
            }
        }

        if (retention.AlertDays > 0)
        {
            await StepAsync("alerts", () => alertStore.DeleteBeforeAsync(now.AddDays(-retention.AlertDays), cancellationToken));
        }

        foreach (var (name, count) in deleted.Where(entry => entry.Value >= 0))
        {
            _deleted.Add(count, new KeyValuePair<string, object?>("resolution", name));
        }

        return deleted;
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(options.Value.Interval, timeProvider);
        do
        {
            // A step that failed is not in the list (its failure was logged): "applied" names only those that were.
            var deleted = await ApplyAsync(stoppingToken);
            LogApplied(logger, string.Join(", ", deleted.Select(pair => pair.Value >= 0 ? $"{pair.Key} {pair.Value}" : $"{pair.Key} (not counted by the store)")));
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }

    [LoggerMessage(EventId = 3601, Level = LogLevel.Information, Message = "Retention applied; rows deleted, by each step that ran: {Deleted}")]
    private static partial void LogApplied(ILogger logger, string deleted);

    [LoggerMessage(EventId = 3602, Level = LogLevel.Warning, Message = "Applying the {Resolution} retention failed; it runs again at the next interval")]
    private static partial void LogFailed(ILogger logger, Exception exception, string resolution);
}
