using Microsoft.Extensions.Diagnostics.HealthChecks;
using Telemetry.Core.Storage;
using Telemetry.Ingest.Pipeline;
using Telemetry.Storage.DuckDb;
using Telemetry.Storage.Influx;

namespace Telemetry.Api.Health;

/// <summary>
/// Healthy when the DuckDB file answers a query and the last group commit succeeded (to DuckDB or InfluxDB, whichever
/// holds the raw series).
/// </summary>
public sealed class StoreHealthCheck(DuckDbDatabase database, CommitPipeline pipeline, IRawSeriesStore rawStore) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        if (pipeline.StoreFailing)
        {
            return Task.FromResult(HealthCheckResult.Unhealthy("the last commit to the raw store failed; devices are not being acknowledged"));
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
