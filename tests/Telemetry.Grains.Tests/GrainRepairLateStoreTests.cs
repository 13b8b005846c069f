using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Telemetry.Core.Readings;
using Telemetry.Core.Rollups;
using Telemetry.Core.Storage;
using Telemetry.Core.Vitals;
using Telemetry.Ingest;
using Telemetry.Ingest.Pipeline;
using static Telemetry.Grains.Tests.ClusterFixture;

namespace Telemetry.Grains.Tests;

/// <summary>
/// The grain repair over a store that shows a commit a while after answering it: a grain that rebuilds from it in the
/// middle of its life (a repair rebuilds it, a failed call starts it over) may not find the commits it had applied just
/// before, and no call brings those again; their minutes are settled from the store once it shows them.
/// </summary>
public sealed class GrainRepairLateStoreTests(LateShowingClusterFixture fixture) : IClassFixture<LateShowingClusterFixture>
{
    // How long the repair waits for the store to show a commit: long enough for a test to act before it is up.
    private static readonly TimeSpan SettleDelay = TimeSpan.FromSeconds(3);

    private readonly long _base = AnHourIntoToday();

    private LateShowingRawStore Store => (LateShowingRawStore)fixture.SiloServices.GetRequiredService<IRawSeriesStore>();

    [Fact]
    public async Task A_repair_that_rebuilds_a_grain_settles_the_commits_it_had_applied_that_the_store_did_not_show_yet()
    {
        var patient = "p-rebuilt-by-repair";
        var grain = fixture.Patient(patient);
        await grain.GetLiveAsync();
        var first = await CommitAndApplyAsync(patient, Heart(_base + 1_000, 60));

        // A commit whose call never arrived; then one the grain applied, which the store does not show yet.
        var lost = fixture.Commit(patient, Heart(_base + 61_000, 70));
        Store.Hide(patient, VitalKind.OxygenSaturation);
        var unshown = await CommitAndApplyAsync(patient, Oxygen(_base + 62_000, 95), Oxygen(_base + 63_000, 97));
        var log = new LateShowingCommitLog(fixture.SiloServices.GetRequiredService<ICommitLog>()) { Shown = lost };
        await log.SaveAppliedThroughAsync(unshown);
        using var stopping = new CancellationTokenSource();
        var repair = await StartRepairAsync(log, () => unshown, stopping.Token);

        // The lost call's repair rebuilds the grain from a store without the oxygen readings it had.
        repair.Add(first, lost, patients: [patient]);
        await WhenAsync(() => grain.GetOpenWindowAsync(VitalKind.OxygenSaturation, Resolution.Minute), window => window is null);
        Assert.Equal(70, (await grain.GetOpenWindowAsync(VitalKind.HeartRate, Resolution.Minute))?.Max);

        // The store shows them now; the grain moves on to a later minute and the next hour, and settles what it lost.
        Store.ShowAll();
        log.Shown = unshown;
        await AssertSettledAsync(patient, grain);
        await stopping.CancelAsync();
    }

    [Fact]
    public async Task A_failed_call_settles_the_commits_its_grain_had_applied_that_the_next_activation_did_not_find()
    {
        var patient = "p-started-over";
        var grain = fixture.Patient(patient);
        await grain.GetLiveAsync();
        await CommitAndApplyAsync(patient, Heart(_base + 1_000, 60));

        // The grain applies oxygen readings the store does not show yet; the next commit's call fails, which starts the
        // grain over, and its next activation rebuilds from the store as it is (showing that next commit already).
        Store.Hide(patient, VitalKind.OxygenSaturation);
        var unshown = await CommitAndApplyAsync(patient, Oxygen(_base + 62_000, 95), Oxygen(_base + 63_000, 97));
        var failed = fixture.Commit(patient, Heart(_base + 64_000, 70));
        var log = new LateShowingCommitLog(fixture.SiloServices.GetRequiredService<ICommitLog>()) { Shown = unshown - 1 };
        await log.SaveAppliedThroughAsync(failed);
        using var stopping = new CancellationTokenSource();
        var repair = await StartRepairAsync(log, () => failed, stopping.Token);
        repair.CallsFailed(unshown, failed, [patient]);
        await fixture.DeactivateIdleGrainsAsync();
        Assert.Equal([VitalKind.HeartRate], (await grain.GetLiveAsync()).Vitals.Select(vital => vital.Kind));

        // The store shows them now; the grain moves on to the next hour. The failed commit's repair finds it read by the
        // rebuild; the oxygen readings are settled all the same. (The old activation wrote its open minute as it went.)
        Store.ShowAll();
        log.Shown = failed;
        await AssertSettledAsync(patient, grain);
        await stopping.CancelAsync();
    }

    /// <summary>
    /// Has the grain (which lacks the oxygen readings at +62 s and +63 s) close their hour before the settling is due;
    /// then the settling writes their minute and that hour whole.
    /// </summary>
    private async Task AssertSettledAsync(string patient, Core.Grains.IPatientGrain grain)
    {
        var nextHour = _base + Resolution.Hour.Milliseconds();
        await CommitAndApplyAsync(patient, Oxygen(_base + 181_000, 99));
        await CommitAndApplyAsync(patient, Oxygen(nextHour + 1_000, 98));

        var hour = await WhenAsync(
            () => fixture.Rollups.QueryAsync(patient, VitalKind.OxygenSaturation, Resolution.Hour, _base, nextHour),
            rollups => rollups.Count == 1 && rollups[0].Count == 3);
        Assert.Equal((3L, 95.0, 99.0), (hour.Single().Count, hour.Single().Min, hour.Single().Max));
        var minute = Assert.Single(await fixture.Rollups.QueryAsync(patient, VitalKind.OxygenSaturation, Resolution.Minute, _base + 60_000, _base + 120_000));
        Assert.Equal((2L, 95.0, 97.0), (minute.Count, minute.Min, minute.Max));
        Assert.Equal(98, (await grain.GetLiveAsync()).Vitals.Single(vital => vital.Kind == VitalKind.OxygenSaturation).Value);
    }

    private async Task<long> CommitAndApplyAsync(string patientId, params VitalReading[] readings)
    {
        var commitId = fixture.Commit(patientId, readings);
        await fixture.Patient(patientId).ApplyAsync(new PatientReadings(commitId, readings));
        return commitId;
    }

    private async Task<GrainRepair> StartRepairAsync(ICommitLog log, Func<long> lastCommitted, CancellationToken stopping)
    {
        var repair = new GrainRepair(
            log,
            fixture.Cluster.GrainFactory,
            new IngestInstruments(fixture.SiloServices.GetRequiredService<IMeterFactory>()),
            NullLogger.Instance,
            lastCommitted,
            lastCommitted,
            SettleDelay);
        await repair.StartAsync(ready: new CancellationToken(canceled: true), stopping);
        return repair;
    }
}
