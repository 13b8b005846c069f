using System.Globalization;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using Telemetry.Core.Storage;
using Telemetry.Ingest;
using Telemetry.Ingest.Pipeline;
using Telemetry.Storage.DuckDb;
using Telemetry.Storage.Influx;

namespace Telemetry.Api.Health;

/// <summary>
/// Healthy when the DuckDB file answers a query, the series server (if the raw series are on one) answers its ping, the
/// last group commit succeeded (to whichever store holds the raw series), and no batch has waited longer than
/// <see cref="IngestOptions.SlowCommitWait"/> for its commit (nor the commit loop as long for patients' grains to take
/// what was committed). A series server that answers again after a failed commit makes it degraded (served, so a load
/// balancer sends devices again, whose next commit tells), not unhealthy: no commit comes to clear it otherwise; one
/// that refused that commit's writes (a wrong token or bucket) is unhealthy for a minute first. A series server whose own
/// settings lose or double readings (<see cref="SeriesSettingsCheck"/>) makes it degraded, naming them.
/// </summary>
public sealed class StoreHealthCheck(
    DuckDbDatabase database,
    CommitPipeline pipeline,
    IRawSeriesStore rawStore,
    SeriesSettingsCheck seriesSettings,
    IOptions<IngestOptions> ingest,
    TimeProvider timeProvider) : IHealthCheck
{
    private static readonly TimeSpan PingTimeout = TimeSpan.FromSeconds(2);
    private static readonly TimeSpan RefusalUnhealthyFor = TimeSpan.FromMinutes(1);

    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var series = rawStore as InfluxRawSeriesStore;
        var answers = series is null || await series.AnswersAsync(PingTimeout, cancellationToken);
        if (pipeline.StoreFailing)
        {
            // A server that answers but refused the writes (a wrong token, organisation or bucket) would refuse the next
            // too: unhealthy for a while, then degraded, so that a load balancer sends devices again after the setting
            // is mended, whose next commit tells (no commit would come to clear it otherwise).
            if (series?.Refusal is { } refusal)
            {
                var message = $"{series.Describe()} refused the writes: {refusal.Reason}; check its token, organisation and bucket";
                return timeProvider.GetUtcNow() - refusal.At < RefusalUnhealthyFor
                    ? HealthCheckResult.Unhealthy(message + "; devices are not being acknowledged")
                    : HealthCheckResult.Degraded(message + "; the next commit will tell whether it still does");
            }

            return answers && series is not null
                ? HealthCheckResult.Degraded($"the last commit to the raw store failed; {series.Describe()} answers again, and the next commit will tell")
                : HealthCheckResult.Unhealthy("the last commit to the raw store failed; devices are not being acknowledged"
                    + (series is null ? "" : $" ({series.Describe()} does not answer)"));
        }

        // The commit loop waiting for patients' grains holds commits back too: name the cause, not the symptom.
        var grainWait = pipeline.GrainWait;
        if (grainWait > ingest.Value.SlowCommitWait)
        {
            return HealthCheckResult.Unhealthy(string.Create(
                CultureInfo.InvariantCulture,
                $"patients' live state is slower than the load: commits have waited {grainWait.TotalSeconds:0.0} s for grains to take {pipeline.ReadingsInGrainCalls} readings; devices are acknowledged late"));
        }

        var wait = pipeline.OldestWait;
        if (wait > ingest.Value.SlowCommitWait)
        {
            return HealthCheckResult.Unhealthy(string.Create(
                CultureInfo.InvariantCulture,
                $"the raw store is slower than the load: a batch has waited {wait.TotalSeconds:0.0} s for its commit ({pipeline.Queued} batches queued); devices are acknowledged late"));
        }

        if (!answers)
        {
            return HealthCheckResult.Unhealthy(string.Create(
                CultureInfo.InvariantCulture,
                $"{series!.Describe()} does not answer its ping within {PingTimeout.TotalSeconds:0} s: the next commit to it will fail or be slow, and trends and exports cannot be read"));
        }

        try
        {
            using var connection = database.OpenConnection();
            using var command = connection.CreateCommand();
            command.CommandText = "SELECT 1";
            command.ExecuteScalar();
            var raw = series is null ? "" : $"; raw series in {series.Describe()}";

            // Served (it takes and keeps most readings), but told: what the server's settings lose or double.
            return seriesSettings.Problems is { Count: > 0 } problems
                ? HealthCheckResult.Degraded($"{series!.Describe()}: {string.Join("; ", problems)}")
                : HealthCheckResult.Healthy($"DuckDB at {database.FilePath}{raw}");
        }
        catch (Exception exception)
        {
            return HealthCheckResult.Unhealthy("the DuckDB file does not answer", exception);
        }
    }
}
