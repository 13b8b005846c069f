using Microsoft.Extensions.DependencyInjection;
using Orleans.TestingHost;
using Telemetry.Core.Alerts;
using Telemetry.Grains;
using Telemetry.Grains.Tests.Alerts;
using Telemetry.Storage;

namespace Telemetry.Grains.Tests;

/// <summary>One in-process Orleans silo over a real DuckDB file in a temporary folder, shared by a test class.</summary>
public sealed class ClusterFixture : IAsyncLifetime
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "telemetry-grains-" + Guid.NewGuid().ToString("N"));

    public TestCluster Cluster { get; private set; } = null!;

    public IServiceProvider SiloServices => Cluster.GetSiloServiceProvider();

    public async Task InitializeAsync()
    {
        var builder = new TestClusterBuilder(1);
        builder.Properties["Telemetry:Storage:DuckDb:Path"] = Path.Combine(_directory, "telemetry.duckdb");
        builder.AddSiloBuilderConfigurator<SiloConfigurator>();
        Cluster = builder.Build();
        await Cluster.DeployAsync();
    }

    public async Task DisposeAsync()
    {
        await Cluster.StopAllSilosAsync();
        await Cluster.DisposeAsync();
        Directory.Delete(_directory, recursive: true);
    }

    public sealed class SiloConfigurator : ISiloConfigurator
    {
        public void Configure(ISiloBuilder siloBuilder)
        {
            siloBuilder.Services.AddMetrics();
            siloBuilder.Services.AddSingleton<ShiftableClock>();
            siloBuilder.Services.AddSingleton<TimeProvider>(sp => sp.GetRequiredService<ShiftableClock>());
            siloBuilder.Services.AddSingleton<GrainInstruments>();
            siloBuilder.Services.AddDuckDbStorage();
            siloBuilder.Services.AddSingleton<RecordingAlertPublisher>();
            siloBuilder.Services.AddSingleton<IAlertPublisher>(sp => sp.GetRequiredService<RecordingAlertPublisher>());
        }
    }
}
