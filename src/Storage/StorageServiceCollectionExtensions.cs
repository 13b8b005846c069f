using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Orleans.Runtime.Hosting;
using Orleans.Storage;
using Telemetry.Core.Grains;
using Telemetry.Core.Storage;
using Telemetry.Storage.DuckDb;
using Telemetry.Storage.Influx;
using Telemetry.Storage.Retention;

namespace Telemetry.Storage;

/// <summary>
/// Wires the stores: the embedded DuckDB file holds rollups, alerts, care teams and durable grain state, and the raw
/// series too unless <paramref name="rawStore"/> puts them in InfluxDB.
/// </summary>
public static class StorageServiceCollectionExtensions
{
    public const string RawStoreKey = "Telemetry:Storage:RawStore";

    public static IServiceCollection AddDuckDbStorage(this IServiceCollection services, RawStoreKind rawStore = RawStoreKind.DuckDb)
    {
        services.AddOptions<DuckDbOptions>().BindConfiguration(DuckDbOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton<DuckDbDatabase>();
        if (rawStore == RawStoreKind.InfluxDb)
        {
            services.AddOptions<InfluxOptions>().BindConfiguration(InfluxOptions.Section).ValidateDataAnnotations().ValidateOnStart();
            services.AddSingleton<InfluxRawSeriesStore>();
            services.AddSingleton<IRawSeriesStore>(sp => sp.GetRequiredService<InfluxRawSeriesStore>());
        }
        else
        {
            services.AddSingleton<DuckDbRawSeriesStore>();
            services.AddSingleton<IRawSeriesStore>(sp => sp.GetRequiredService<DuckDbRawSeriesStore>());
        }

        services.AddSingleton<DuckDbRollupStore>();
        services.AddSingleton<IRollupStore>(sp => sp.GetRequiredService<DuckDbRollupStore>());
        services.AddHostedService(sp => sp.GetRequiredService<DuckDbRollupStore>());
        services.AddSingleton<IAlertStore, DuckDbAlertStore>();
        services.AddSingleton<ICareTeamStore, DuckDbCareTeamStore>();
        services.AddSingleton<IPatientDirectory, DuckDbPatientDirectory>();
        services.AddOptions<RetentionOptions>().BindConfiguration(RetentionOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<RetentionService>();
        services.AddHostedService(sp => sp.GetRequiredService<RetentionService>());
        services.AddGrainStorage(GrainStorageNames.Durable, static (sp, _) =>
            new DuckDbGrainStorage(sp.GetRequiredService<DuckDbDatabase>(), new OrleansGrainStorageSerializer(sp.GetRequiredService<Orleans.Serialization.Serializer>())));
        return services;
    }
}
