using Microsoft.Extensions.DependencyInjection;
using Orleans.TestingHost;
using Telemetry.Core.Alerts;
using Telemetry.Core.Grains;
using Telemetry.Core.Readings;
using Telemetry.Core.Rollups;
using Telemetry.Core.Storage;
using Telemetry.Core.Vitals;
using Telemetry.Grains;
using Telemetry.Grains.Tests.Alerts;
using Telemetry.Storage;

namespace Telemetry.Grains.Tests;

/// <summary>One in-process Orleans silo over a real DuckDB file in a temporary folder, shared by a test class.</summary>
public class ClusterFixture : IAsyncLifetime
{
    private const string ShowsCommitsLateKey = "Telemetry:Tests:StoreShowsCommitsLate";
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "telemetry-grains-" + Guid.NewGuid().ToString("N"));

    public TestCluster Cluster { get; private set; } = null!;

    public IServiceProvider SiloServices => Cluster.GetSiloServiceProvider();

    // The store takes one committer at a time, as the pipeline guarantees in the server.
    private readonly Lock _commitLock = new();

    /// <summary>Whether the grains' raw store says it shows a commit a while after answering it (<see cref="LateShowingRawStore"/>).</summary>
    protected virtual bool StoreShowsCommitsLate => false;

    /// <summary>The rollup store the silo's grains write.</summary>
    public IRollupStore Rollups => SiloServices.GetRequiredService<IRollupStore>();

    /// <summary>An hour into today (UTC, by the real clock): windows there fall into the days a grain rebuilds on activation.</summary>
    public static long AnHourIntoToday() => Resolution.Day.WindowStart(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()) + 3_600_000;

    public IPatientGrain Patient(string patientId) => Cluster.GrainFactory.GetGrain<IPatientGrain>(patientId);

    /// <summary>Deactivates every idle grain, as a restart would (what they hold in memory is gone).</summary>
    public Task DeactivateIdleGrainsAsync() => Cluster.GrainFactory.GetGrain<IManagementGrain>(0).ForceActivationCollection(TimeSpan.Zero);

    /// <summary>Commits <paramref name="readings"/> to the raw store, from the patient's one device; returns the commit's id.</summary>
    public long Commit(string patientId, params VitalReading[] readings) => CommitFrom("device-" + patientId, patientId, readings);

    /// <summary>Commits <paramref name="readings"/> to the raw store from <paramref name="deviceId"/>; returns the commit's id.</summary>
    public long CommitFrom(string deviceId, string patientId, params VitalReading[] readings)
    {
        lock (_commitLock)
        {
            var outcomes = new BatchOutcome[1];
            return SiloServices.GetRequiredService<Telemetry.Storage.DuckDb.DuckDbRawSeriesStore>().Commit([new DeviceBatch(deviceId, patientId, 0, readings)], outcomes);
        }
    }

    /// <summary>Commits <paramref name="readings"/> and hands them to the patient's grain, as the ingest pipeline does.</summary>
    public async Task CommitAndApplyAsync(string patientId, params VitalReading[] readings) =>
        await Patient(patientId).ApplyAsync(new PatientReadings(Commit(patientId, readings), readings));

    public static VitalReading Heart(long timestampMs, double value) => new(VitalKind.HeartRate, timestampMs, value);

    /// <summary>The first value <paramref name="done"/> accepts, read every 50 ms; the last one read after 15 s.</summary>
    public static async Task<T> WhenAsync<T>(Func<Task<T>> read, Func<T, bool> done)
    {
        var deadline = DateTime.UtcNow.AddSeconds(15);
        var value = await read();
        while (!done(value) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(50);
            value = await read();
        }

        return value;
    }

    public static VitalReading Oxygen(long timestampMs, double value) => new(VitalKind.OxygenSaturation, timestampMs, value);

    public async Task InitializeAsync()
    {
        var builder = new TestClusterBuilder(1);
        builder.Properties["Telemetry:Storage:DuckDb:Path"] = Path.Combine(_directory, "telemetry.duckdb");
        builder.Properties[ShowsCommitsLateKey] = StoreShowsCommitsLate ? "true" : "false";
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
            siloBuilder.Services.AddSingleton<RefusingRollupStore>();
            siloBuilder.Services.AddSingleton<IRollupStore>(sp => sp.GetRequiredService<RefusingRollupStore>());
            if (siloBuilder.Configuration[ShowsCommitsLateKey] == "true")
            {
                siloBuilder.Services.AddSingleton<IRawSeriesStore>(sp => new LateShowingRawStore(sp.GetRequiredService<Telemetry.Storage.DuckDb.DuckDbRawSeriesStore>()));
            }

            siloBuilder.Services.AddSingleton<RecordingAlertPublisher>();
            siloBuilder.Services.AddSingleton<IAlertPublisher>(sp => sp.GetRequiredService<RecordingAlertPublisher>());
        }
    }
}
