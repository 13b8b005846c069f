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
/// Healthy when the DuckDB file answers a query, the last group commit succeeded (to whichever store holds the raw
/// series), and no batch has waited longer than <see cref="IngestOptions.SlowCommitWait"/> for its commit (nor the
/// commit loop as long for patients' grains to take what was committed).
/// </summary>
public sealed class StoreHealthCheck(DuckDbDatabase database, CommitPipeline pipeline, IRawSeriesStore rawStore, IOptions<IngestOptions> ingest) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        if (pipeline.StoreFailing)
        {
            return Task.FromResult(HealthCheckResult.Unhealthy("the last commit to the raw store failed; devices are not being acknowledged"));
        }

        // The commit loop waiting for patients' grains holds commits back too: name the cause, not the symptom.
        var grainWait = pipeline.GrainWait;
        if (grainWait > ingest.Value.SlowCommitWait)
        {
            return Task.FromResult(HealthCheckResult.Unhealthy(string.Create(
                CultureInfo.InvariantCulture,
                $"patients' live state is slower than the load: commits have waited {grainWait.TotalSeconds:0.0} s for grains to take {pipeline.ReadingsInGrainCalls} readings; devices are acknowledged late")));
        }

        var wait = pipeline.OldestWait;
        if (wait > ingest.Value.SlowCommitWait)
        {
            return Task.FromResult(HealthCheckResult.Unhealthy(string.Create(
                CultureInfo.InvariantCulture,
                $"the raw store is slower than the load: a batch has waited {wait.TotalSeconds:0.0} s for its commit ({pipeline.Queued} batches queued); devices are acknowledged late")));
        }

        try
        {
            using var connection = database.OpenConnection();
            using var command = connection.CreateCommand();
            command.CommandText = "SELECT 1";
            command.ExecuteScalar();
            var raw = rawStore is InfluxRawSeriesStore influx ? $"; raw series in {influx.Describe()}" : "";
            return Task.FromResult(HealthCheckResult.Healthy($"DuckDB at {database.FilePath}{raw}"));
        }
        catch (Exception exception)
        {
            return Task.FromResult(HealthCheckResult.Unhealthy("the DuckDB file does not answer", exception));
        }
    }
}
