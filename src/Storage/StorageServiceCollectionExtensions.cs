using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Hosting;
using Orleans.Runtime.Hosting;
using Orleans.Storage;
using Telemetry.Core.Grains;
using Telemetry.Core.Storage;
using Telemetry.Storage.DuckDb;
using Telemetry.Storage.Influx;
using Telemetry.Storage.Redis;
using Telemetry.Storage.Retention;

namespace Telemetry.Storage;

/// <summary>
/// Wires the stores. On one machine the embedded DuckDB file holds everything (the raw series may go to InfluxDB or
/// VictoriaMetrics instead). In cluster mode care teams, the patient directory, the alert history and durable grain
/// state go to Redis, and the rollups beside the raw series, so that every node sees the same; the file keeps only this
/// node's record of which device batches it committed.
/// </summary>
public static class StorageServiceCollectionExtensions
{
    /// <summary>The embedded defaults: everything in the DuckDB file.</summary>
    public static IServiceCollection AddDuckDbStorage(this IServiceCollection services) =>
        services.AddTelemetryStorage(new StorageOptions(), new TelemetryClusterOptions());

    public static IServiceCollection AddTelemetryStorage(this IServiceCollection services, StorageOptions storage, TelemetryClusterOptions cluster)
    {
        if (cluster.Enabled && (storage.RawStore == RawStoreKind.DuckDb || storage.EffectiveRollups == RollupStoreKind.DuckDb))
        {
            throw new InvalidOperationException(
                $"In cluster mode ({TelemetryClusterOptions.Section}:Redis is set) every node must read the same series: set " +
                $"{StorageOptions.Section}:RawStore to InfluxDb or VictoriaMetrics, and leave {StorageOptions.Section}:Rollups unset or RawStore.");
        }

        services.AddOptions<DuckDbOptions>().BindConfiguration(DuckDbOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton<DuckDbDatabase>();
        AddRawStore(services, storage.RawStore);
        if (storage.EffectiveRollups == RollupStoreKind.RawStore && storage.RawStore != RawStoreKind.DuckDb)
        {
            services.AddSingleton<IRollupStore, SeriesRollupStore>();
        }
        else
        {
            services.AddSingleton<DuckDbRollupStore>();
            services.AddSingleton<IRollupStore>(sp => sp.GetRequiredService<DuckDbRollupStore>());
            services.AddHostedService(sp => sp.GetRequiredService<DuckDbRollupStore>());
        }

        if (cluster.Enabled)
        {
            services.AddOptions<TelemetryClusterOptions>().BindConfiguration(TelemetryClusterOptions.Section);
            services.AddSingleton<RedisConnection>();
            services.AddSingleton<IAlertStore, RedisAlertStore>();
            services.AddSingleton<ICareTeamStore, RedisCareTeamStore>();
            services.AddSingleton<IPatientDirectory, RedisPatientDirectory>();
            services.AddRedisGrainStorage(GrainStorageNames.Durable, options => options.Configure<Orleans.Serialization.Serializer>((redis, serializer) =>
            {
                redis.ConfigurationOptions = cluster.RedisConfiguration();
                redis.ConfigurationOptions.AbortOnConnectFail = false;
                redis.GrainStorageSerializer = new OrleansGrainStorageSerializer(serializer);
                redis.GetStorageKey = (grainType, grainId) => $"{cluster.KeyPrefix}grain:{grainType}:{grainId}";
            }));
        }
        else
        {
            services.AddSingleton<IAlertStore, DuckDbAlertStore>();
            services.AddSingleton<ICareTeamStore, DuckDbCareTeamStore>();
            services.AddSingleton<IPatientDirectory, DuckDbPatientDirectory>();
            services.AddGrainStorage(GrainStorageNames.Durable, static (sp, _) =>
                new DuckDbGrainStorage(sp.GetRequiredService<DuckDbDatabase>(), new OrleansGrainStorageSerializer(sp.GetRequiredService<Orleans.Serialization.Serializer>())));
        }

        services.AddOptions<RetentionOptions>().BindConfiguration(RetentionOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<RetentionService>();
        services.AddHostedService(sp => sp.GetRequiredService<RetentionService>());
        return services;
    }

    private static void AddRawStore(IServiceCollection services, RawStoreKind rawStore)
    {
        switch (rawStore)
        {
            case RawStoreKind.InfluxDb:
                services.AddOptions<InfluxOptions>().BindConfiguration(InfluxOptions.Section).ValidateDataAnnotations().ValidateOnStart();
                services.AddSingleton(sp => SeriesBackend.ForInfluxDb(
                    sp.GetRequiredService<IOptions<InfluxOptions>>().Value, sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILogger<SeriesBackend>>()));
                break;
            case RawStoreKind.VictoriaMetrics:
                services.AddOptions<VictoriaMetricsOptions>().BindConfiguration(VictoriaMetricsOptions.Section).ValidateDataAnnotations().ValidateOnStart();
                services.AddSingleton(sp => SeriesBackend.ForVictoriaMetrics(
                    sp.GetRequiredService<IOptions<VictoriaMetricsOptions>>().Value, sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILogger<SeriesBackend>>()));
                break;
            default:
                services.AddSingleton<DuckDbRawSeriesStore>();
                services.AddSingleton<IRawSeriesStore>(sp => sp.GetRequiredService<DuckDbRawSeriesStore>());
                services.AddSingleton<ICommitLog>(sp => DuckDbCommitLog.ForReadings(sp.GetRequiredService<DuckDbDatabase>(), sp.GetRequiredService<DuckDbRawSeriesStore>()));
                return;
        }

        services.AddSingleton<InfluxRawSeriesStore>();
        services.AddSingleton<IRawSeriesStore>(sp => sp.GetRequiredService<InfluxRawSeriesStore>());
        services.AddSingleton<ICommitLog>(sp => DuckDbCommitLog.ForLedger(
            sp.GetRequiredService<DuckDbDatabase>(), sp.GetRequiredService<SeriesBackend>().ReadableAfter, sp.GetRequiredService<TimeProvider>()));
    }
}
