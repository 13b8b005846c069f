using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Telemetry.Core.Rollups;
using Telemetry.Core.Storage;
using Telemetry.Core.Vitals;
using Telemetry.Ingest;
using Telemetry.Ingest.Pipeline;
using static Telemetry.Grains.Tests.ClusterFixture;

namespace Telemetry.Grains.Tests;

/// <summary>
/// The ingest pipeline's grain repair against the real DuckDB commit log and real patient grains: commits whose grain
/// calls were lost (a crash after the ack) or failed are found from the log and recomputed by the patients' grains,
/// windows from before the days a grain rebuilds included, and the mark moves past them.
/// </summary>
public sealed class GrainRepairTests(ClusterFixture fixture) : IClassFixture<ClusterFixture>
{
    private readonly long _base = AnHourIntoToday();
    private readonly long _threeDaysAgo = AnHourIntoToday() - (3 * Resolution.Day.Milliseconds());

    private ICommitLog Log => fixture.SiloServices.GetRequiredService<ICommitLog>();

    [Fact]
    public async Task A_start_recomputes_the_windows_of_every_commit_after_the_mark_and_then_moves_the_mark()
    {
        var patient = "p-repair-start";
        await fixture.CommitAndApplyAsync(patient, Heart(_base + 1_000, 70));
        var applied = (await Log.ReadPositionAsync()).LastCommitId;
        await Log.SaveAppliedThroughAsync(applied);

        // Acknowledged and committed, but the process died before the grain call: a backfill from days ago (past the
        // days a grain rebuilds when it activates) and a reading from today.
        var lost = fixture.Commit(patient, Heart(_threeDaysAgo + 1_000, 80), Heart(_threeDaysAgo + 2_000, 90), Heart(_base + 2_000, 74));
        Assert.Empty(await MinuteRollupsAsync(patient, _threeDaysAgo));

        using var stopping = new CancellationTokenSource();
        var repair = Repair(appliedThrough: lost);
        Assert.Equal(lost, await repair.StartAsync(ready: new CancellationToken(canceled: true), stopping.Token));

        var minute = await WhenAsync(() => MinuteRollupsAsync(patient, _threeDaysAgo), rollups => rollups.Count == 1);
        Assert.Equal((2, 90), (minute.Single().Count, minute.Single().Max));
        Assert.Equal(2, (await fixture.Patient(patient).GetOpenWindowAsync(VitalKind.HeartRate, Resolution.Minute))?.Count);

        await stopping.CancelAsync();
        await repair.SaveLastAsync(lost);
        Assert.Equal(lost, (await Log.ReadPositionAsync()).AppliedThrough);
    }

    [Fact]
    public async Task A_repair_asked_for_one_patient_recomputes_that_patients_windows_and_no_one_elses()
    {
        var failed = "p-repair-failed";
        var other = "p-repair-other";
        await fixture.CommitAndApplyAsync(failed, Heart(_base + 1_000, 70));
        var before = (await Log.ReadPositionAsync()).LastCommitId;

        // Two commits of backfills from days ago, neither applied: the first patient's call failed (what the pipeline
        // asks a repair for); the second stands for a call that succeeded, so this repair must leave it alone.
        fixture.Commit(failed, Heart(_threeDaysAgo + 1_000, 100));
        var last = fixture.Commit(other, Heart(_threeDaysAgo + 5_000, 60));
        await Log.SaveAppliedThroughAsync(last);

        using var stopping = new CancellationTokenSource();
        var repair = Repair(appliedThrough: last);
        Assert.Equal(last, await repair.StartAsync(ready: new CancellationToken(canceled: true), stopping.Token));
        repair.Add(before, last, patients: [failed]);

        var minute = await WhenAsync(() => MinuteRollupsAsync(failed, _threeDaysAgo), rollups => rollups.Count == 1);
        Assert.Equal((1, 100), (minute.Single().Count, minute.Single().Max));
        Assert.Empty(await MinuteRollupsAsync(other, _threeDaysAgo));

        await stopping.CancelAsync();
        await repair.SaveLastAsync(last);
        Assert.Equal(last, (await Log.ReadPositionAsync()).AppliedThrough);
    }

    [Fact]
    public async Task A_repair_that_a_later_failure_joins_waits_until_the_later_commit_has_settled()
    {
        // A store that shows a commit whole only a while after answering it (as a series server does): a repair may
        // read a commit only once that while has passed.
        var settle = TimeSpan.FromSeconds(4);
        var patient = "p-repair-joined";
        await fixture.CommitAndApplyAsync(patient, Heart(_base + 1_000, 70));
        var before = (await Log.ReadPositionAsync()).LastCommitId;
        var first = fixture.Commit(patient, Heart(_threeDaysAgo + 1_000, 100));
        var second = fixture.Commit(patient, Heart(_threeDaysAgo + 61_000, 110));
        await Log.SaveAppliedThroughAsync(second);

        using var stopping = new CancellationTokenSource();
        var repair = Repair(appliedThrough: second, settle);
        await repair.StartAsync(ready: new CancellationToken(canceled: true), stopping.Token);
        var sinceFirst = Stopwatch.StartNew();
        repair.Add(before, first, patients: [patient]);
        await Task.Delay(settle / 2);

        // The next commit's call fails too: its range joins the first, which must now wait for the second commit to
        // settle (2 s after the first would have been due), not read it at the first's time.
        repair.Add(first, second, patients: [patient]);
        await Task.Delay(settle + (settle / 8) - sinceFirst.Elapsed);
        var early = await MinuteRollupsAsync(patient, _threeDaysAgo);
        if (sinceFirst.Elapsed < settle * 1.4)
        {
            // (Only when this look came in time: on a machine slow enough to make it later, the repair may be due.)
            Assert.Empty(early);
        }

        var firstMinute = await WhenAsync(() => MinuteRollupsAsync(patient, _threeDaysAgo), rollups => rollups.Count == 1);
        var secondMinute = await WhenAsync(() => MinuteRollupsAsync(patient, _threeDaysAgo + 60_000), rollups => rollups.Count == 1);
        Assert.True(sinceFirst.Elapsed >= settle * 1.5, $"repaired {sinceFirst.Elapsed} after the first range, before the second commit settled");
        Assert.Equal(100, firstMinute.Single().Max);
        Assert.Equal(110, secondMinute.Single().Max);
        await stopping.CancelAsync();
    }

    [Fact]
    public async Task Unsettled_minutes_reported_out_of_commit_order_keep_the_mark_before_the_earlier_commit()
    {
        var patient = "p-repair-reordered";
        await fixture.CommitAndApplyAsync(patient, Heart(_base + 1_000, 70));
        var before = (await Log.ReadPositionAsync()).LastCommitId;
        await Log.SaveAppliedThroughAsync(before);
        using var stopping = new CancellationTokenSource();
        var repair = Repair(appliedThrough: before, settleDelay: TimeSpan.FromMinutes(1));
        await repair.StartAsync(ready: new CancellationToken(canceled: true), stopping.Token);

        // Two commits whose calls recomputed minutes the store did not show yet; the later commit's call answers first,
        // the earlier one's within the same second. The minutes are not yet due to be settled when the server stops.
        var earlier = fixture.Commit(patient, Heart(_threeDaysAgo + 1_000, 100));
        var later = fixture.Commit(patient, Heart(_threeDaysAgo + 61_000, 110));
        repair.AddUnsettled(patient, later, [new(VitalKind.HeartRate, _threeDaysAgo + 60_000, later, later)]);
        repair.AddUnsettled(patient, earlier, [new(VitalKind.HeartRate, _threeDaysAgo, earlier, earlier)]);
        await stopping.CancelAsync();
        await repair.SaveLastAsync(later);

        // So the next start repairs both commits, the earlier one's minute included.
        Assert.Equal(earlier - 1, (await Log.ReadPositionAsync()).AppliedThrough);
    }

    [Fact]
    public async Task After_an_unclean_stop_the_windows_grains_held_open_are_recomputed_however_long_the_patient_is_silent()
    {
        var patient = "p-open-at-stop";

        // Readings from before the stop, as ingest takes them (the stop's days are found from readings at most the allowed
        // clock skew ahead): an hour into today, or, in today's first hour, a whole minute a couple of minutes ago.
        var at = Math.Min(_base, Resolution.Minute.WindowStart(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - 120_000));

        // Committed and applied, then the server was killed: the grain's open minute, hour and day were in its memory
        // only (here the call is left out, so none of them reached the rollup store either), and the mark had passed.
        var last = fixture.Commit(patient, Heart(at + 1_000, 70), Heart(at + 2_000, 80));
        await Log.SaveAppliedThroughAsync(last);

        // Two days on, before anything of the patient's is asked for: an activation now rebuilds only yesterday and today.
        var clock = fixture.SiloServices.GetRequiredService<ShiftableClock>();
        clock.Offset = TimeSpan.FromDays(2);
        try
        {
            var log = new UncleanlyStoppedCommitLog((Telemetry.Storage.DuckDb.DuckDbCommitLog)Log);
            using var stopping = new CancellationTokenSource();
            var repair = new GrainRepair(log, fixture.Cluster.GrainFactory, new IngestInstruments(fixture.SiloServices.GetRequiredService<IMeterFactory>()), NullLogger.Instance, () => last, () => last, TimeSpan.Zero);
            await repair.StartAsync(ready: new CancellationToken(canceled: true), stopping.Token);

            foreach (var resolution in ResolutionExtensions.All)
            {
                var windows = await WhenAsync(
                    () => fixture.Rollups.QueryAsync(patient, VitalKind.HeartRate, resolution, resolution.WindowStart(at), at + 1),
                    found => found.Count == 1);
                Assert.Equal((2, 75.0), (Assert.Single(windows).Count, windows[0].Mean));
            }

            Assert.True(await WhenAsync(() => Task.FromResult(log.Recovered), recovered => recovered));
            await stopping.CancelAsync();
            await repair.SaveLastAsync(last);
        }
        finally
        {
            clock.Offset = TimeSpan.Zero;
        }
    }

    private GrainRepair Repair(long appliedThrough, TimeSpan settleDelay = default) => new(
        Log,
        fixture.Cluster.GrainFactory,
        new IngestInstruments(fixture.SiloServices.GetRequiredService<IMeterFactory>()),
        NullLogger.Instance,
        () => appliedThrough,
        () => appliedThrough,
        settleDelay);

    private Task<IReadOnlyList<RollupWindow>> MinuteRollupsAsync(string patientId, long minuteStartMs) =>
        fixture.Rollups.QueryAsync(patientId, VitalKind.HeartRate, Resolution.Minute, minuteStartMs, minuteStartMs + 60_000);
}
