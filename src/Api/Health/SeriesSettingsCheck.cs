using Microsoft.Extensions.Options;
using Telemetry.Core.Storage;
using Telemetry.Ingest;
using Telemetry.Storage.Influx;
using Telemetry.Storage.Retention;

namespace Telemetry.Api.Health;

/// <summary>
/// With the raw series on a series server, reads the server's own settings that decide whether it keeps what this server
/// acknowledges, and the rollups it keeps (<see cref="SeriesBackend.SettingsProblemsAsync"/>): at start, every 30 s until they could be read,
/// then every 10 minutes (a server restarted with other settings). What is wrong is logged as an error once, and
/// <c>/healthz</c> reports it (<see cref="StoreHealthCheck"/>: degraded) until mended.
/// </summary>
public sealed partial class SeriesSettingsCheck(
    IServiceProvider services, IOptions<IngestOptions> ingest, IOptions<RetentionOptions> retention, ILogger<SeriesSettingsCheck> logger) : BackgroundService
{
    private static readonly TimeSpan RetryDelay = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan CheckInterval = TimeSpan.FromMinutes(10);

    private volatile IReadOnlyList<string> _problems = [];

    /// <summary>What the last reading of the settings found wrong; empty when nothing (or before they could be read).</summary>
    public IReadOnlyList<string> Problems => _problems;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (services.GetService<SeriesBackend>() is not { } backend)
        {
            return;
        }

        while (!stoppingToken.IsCancellationRequested)
        {
            var problems = await backend.SettingsProblemsAsync(ingest.Value.BackfillHorizon, RollupsKept(), stoppingToken);
            if (problems is not null)
            {
                foreach (var problem in problems.Except(_problems, StringComparer.Ordinal))
                {
                    LogSettingsProblem(logger, backend.Description, problem);
                }

                if (problems.Count == 0 && _problems.Count > 0)
                {
                    LogSettingsMended(logger, backend.Description);
                }

                _problems = problems;
            }

            await Task.Delay(problems is null ? RetryDelay : CheckInterval, stoppingToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    /// <summary>How long the rollups on the series server are to be kept (the day windows, the longest kept); null when they are elsewhere.</summary>
    private TimeSpan? RollupsKept() =>
        services.GetService<IRollupStore>() is not SeriesRollupStore ? null
        : retention.Value.DayRollupDays == 0 ? TimeSpan.MaxValue
        : TimeSpan.FromDays(retention.Value.DayRollupDays);

    [LoggerMessage(EventId = 2430, Level = LogLevel.Error, Message = "{Store}: {Problem}")]
    private static partial void LogSettingsProblem(ILogger logger, string store, string problem);

    [LoggerMessage(EventId = 2431, Level = LogLevel.Information, Message = "{Store}: its settings no longer lose or double readings")]
    private static partial void LogSettingsMended(ILogger logger, string store);
}
