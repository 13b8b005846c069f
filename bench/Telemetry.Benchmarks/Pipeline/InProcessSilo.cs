using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Telemetry.Core.Alerts;
using Telemetry.Grains;
using Telemetry.Storage;

namespace Telemetry.Benchmarks.Pipeline;

/// <summary>
/// An Orleans silo in this process with the server's grains over a DuckDB file in a temporary folder, for benchmarks
/// that call grains directly. Alert events are counted, not delivered.
/// </summary>
internal sealed class InProcessSilo : IDisposable
{
    private readonly DirectoryInfo _directory;
    private readonly IHost _host;

    private InProcessSilo(DirectoryInfo directory, IHost host)
    {
        _directory = directory;
        _host = host;
    }

    public IGrainFactory Grains => _host.Services.GetRequiredService<IGrainFactory>();

    public static InProcessSilo Start()
    {
        var directory = Directory.CreateTempSubdirectory("telemetry-silo-bench-");
        var builder = Host.CreateApplicationBuilder();
        // Quiet: stopping a silo of 100,000 patients reports every deactivation cut short by the stop's timeout.
        builder.Logging.ClearProviders();
        builder.Configuration["Telemetry:Storage:DuckDb:Path"] = Path.Combine(directory.FullName, "telemetry.duckdb");
        builder.Services.AddMetrics();
        builder.Services.AddSingleton<GrainInstruments>();
        builder.Services.AddDuckDbStorage();
        builder.Services.AddSingleton<IAlertPublisher, CountingAlertPublisher>();
        builder.UseOrleans(silo => silo.UseLocalhostClustering(siloPort: ServerProcess.FreePort(), gatewayPort: ServerProcess.FreePort()));
        var host = builder.Build();
        host.StartAsync().GetAwaiter().GetResult();
        return new InProcessSilo(directory, host);
    }

    public void Dispose()
    {
        _host.StopAsync().GetAwaiter().GetResult();
        _host.Dispose();
        _directory.Delete(recursive: true);
    }

    private sealed class CountingAlertPublisher : IAlertPublisher
    {
        private long _published;

        public void Publish(IReadOnlyList<AlertEvent> events) => Interlocked.Add(ref _published, events.Count);
    }
}
