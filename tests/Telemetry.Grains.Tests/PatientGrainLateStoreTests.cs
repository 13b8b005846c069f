using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Telemetry.Core.Alerts;
using Telemetry.Core.Grains;
using Telemetry.Core.Readings;
using Telemetry.Core.Rollups;
using Telemetry.Core.Storage;
using Telemetry.Core.Vitals;
using Telemetry.Ingest;
using Telemetry.Ingest.Pipeline;
using static Telemetry.Grains.Tests.ClusterFixture;

namespace Telemetry.Grains.Tests;

/// <summary>
/// The patient grain over a store that shows a commit a while after answering it, as a time-series server does: an
/// activation may read part of a commit it is handed a moment later.
/// </summary>
public sealed class PatientGrainLateStoreTests(LateShowingClusterFixture fixture) : IClassFixture<LateShowingClusterFixture>
{
    private readonly long _base = AnHourIntoToday();

    [Fact]
    public async Task A_patient_with_rules_whose_activation_gave_itself_up_comes_back_by_itself_and_its_clocks_run()
    {
        var patient = "p-comes-back";
        var store = (LateShowingRawStore)fixture.SiloServices.GetRequiredService<IRawSeriesStore>();
        var clock = fixture.SiloServices.GetRequiredService<ShiftableClock>();
        await fixture.Patient(patient).SetAlertRulesAsync(new AlertRuleSet(
            [new AlertRule("hr-silent", AlertRuleType.NoData, AlertPriority.Medium, VitalKind.HeartRate, SilenceSeconds: 300)]));
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        await fixture.CommitAndApplyAsync(patient, Heart(now, 70));

        // The store fails the patient's reads: a late reading's windows cannot be recomputed, and the grain gives its
        // activation up. Then the device goes silent: no reading, and no call from anyone, brings the grain back.
        store.AfterAggregate = id =>
        {
            if (id == patient)
            {
                throw new IOException("the raw store is away");
            }
        };
        await Assert.ThrowsAnyAsync<Exception>(() => fixture.CommitAndApplyAsync(patient, Heart(now - (5 * 60_000), 71)));
        store.AfterAggregate = null;

        // Ten minutes of silence later (the clock moved on), it has come back by itself and its no-data rule raised.
        clock.Offset = TimeSpan.FromMinutes(10);
        try
        {
            var alerts = fixture.SiloServices.GetRequiredService<IAlertStore>();
            var raised = false;
            for (var waited = 0; !raised && waited < 30_000; waited += 250)
            {
                await Task.Delay(250);
                raised = (await alerts.QueryAsync(new AlertQuery(patient, null, null, OpenOnly: true, Limit: 10))).Any(alert => alert.RuleId == "hr-silent");
            }

            Assert.True(raised, "the patient's grain did not come back by itself: its no-data alert was not raised");
        }
        finally
        {
            clock.Offset = TimeSpan.Zero;
        }
    }

    [Fact]
    public async Task A_commit_the_activation_read_only_part_of_ends_up_whole_in_every_minute()
    {
        var patient = "p-part-read";
        await fixture.CommitAndApplyAsync(patient, Heart(_base + 1_000, 60));
        await fixture.DeactivateIdleGrainsAsync();

        // One commit over two minutes, of which the store showed only the first reading of each when the grain activated
        // and read it; the rest it shows after the commit's call (written under an id of its own, which no grain is told).
        VitalReading[] commit = [Heart(_base + 61_000, 70), Heart(_base + 62_000, 72), Heart(_base + 121_000, 80), Heart(_base + 122_000, 82)];
        var commitId = fixture.Commit(patient, commit[0], commit[2]);
        var grain = fixture.Patient(patient);
        await grain.GetLiveAsync();
        var unsettled = (await grain.ApplyAsync(new PatientReadings(commitId, commit))).Value;
        fixture.Commit(patient, commit[1], commit[3]);
        await fixture.CommitAndApplyAsync(patient, Heart(_base + 181_000, 90));

        // The minute the grain read part of, closed, was taken from the store while it still showed only that part; the
        // one after it, the last the activation read, was read again reading by reading, and holds the commit's whole.
        Assert.Equal([1, 1, 2], (await MinutesAsync(patient)).Select(minute => minute.Count));

        // Settled once the store shows the whole commit, as the ingest pipeline has it (ReadableAfter later).
        Assert.Contains(unsettled, minute => minute.MinuteStartMs == _base + 60_000);
        await grain.SettleAsync(unsettled);
        var minutes = await MinutesAsync(patient);
        Assert.Equal([1, 2, 2], minutes.Select(minute => minute.Count));
        Assert.Equal([60, 72, 82], minutes.Select(minute => minute.Max));
        Assert.Equal(1, (await grain.GetOpenWindowAsync(VitalKind.HeartRate, Resolution.Minute))?.Count);
        Assert.Equal(90, (await grain.GetLiveAsync()).Vitals.Single().Value);
    }

    [Fact]
    public async Task A_commit_the_activation_read_part_of_in_a_minute_still_open_is_whole_in_it_at_once()
    {
        var patient = "p-part-read-open";
        await fixture.CommitAndApplyAsync(patient, Heart(_base + 1_000, 60));
        await fixture.DeactivateIdleGrainsAsync();

        // One commit within one minute, the grain's last: the store showed its first reading to the activation's
        // aggregate, its second only to the read after it, its third only after the commit's call. No reading comes
        // after it, so nothing closes the minute: the open minute itself must hold the commit whole.
        VitalReading[] commit = [Heart(_base + 61_000, 70), Heart(_base + 62_000, 72), Heart(_base + 63_000, 74)];
        var commitId = fixture.Commit(patient, commit[0]);
        var store = (LateShowingRawStore)fixture.SiloServices.GetRequiredService<IRawSeriesStore>();
        store.AfterAggregate = id =>
        {
            if (id == patient)
            {
                store.AfterAggregate = null;
                fixture.Commit(patient, commit[1]);
            }
        };

        var grain = fixture.Patient(patient);
        await grain.GetLiveAsync();
        var unsettled = (await grain.ApplyAsync(new PatientReadings(commitId, commit))).Value;
        fixture.Commit(patient, commit[2]);

        var open = await grain.GetOpenWindowAsync(VitalKind.HeartRate, Resolution.Minute);
        Assert.Equal((_base + 60_000, 3L, 70.0, 74.0), (open?.StartMs, open?.Count, open?.Min, open?.Max));
        Assert.Equal(4, (await grain.GetOpenWindowAsync(VitalKind.HeartRate, Resolution.Hour))?.Count);
        Assert.Equal([(_base, 1L), (_base + 60_000, 3L)], (await grain.GetRecentWindowsAsync(VitalKind.HeartRate, Resolution.Minute)).Select(window => (window.StartMs, window.Count)));
        Assert.Empty(unsettled);

        // The next minute closes it as it is: no settling from the store needed.
        await fixture.CommitAndApplyAsync(patient, Heart(_base + 121_000, 80));
        Assert.Equal([1, 3], (await MinutesAsync(patient)).Select(minute => minute.Count));
    }

    [Fact]
    public async Task A_second_devices_reading_at_a_time_the_activation_read_from_the_first_is_in_the_minute_once_it_closes()
    {
        var patient = "p-two-devices";
        await fixture.CommitAndApplyAsync(patient, Heart(_base + 1_000, 60));
        await fixture.DeactivateIdleGrainsAsync();

        // The watch's reading at 61 s was shown to the activation; the ring's at the same millisecond was committed and
        // handed over after it. The grain knows readings by time, not device: it takes the ring's for the watch's.
        fixture.CommitFrom("watch", patient, Heart(_base + 61_000, 70));
        var grain = fixture.Patient(patient);
        await grain.GetLiveAsync();
        VitalReading[] ring = [Heart(_base + 61_000, 74)];
        await grain.ApplyAsync(new PatientReadings(fixture.CommitFrom("ring", patient, ring), ring));

        // So the minute is taken from the store as it closes.
        await fixture.CommitAndApplyAsync(patient, Heart(_base + 121_000, 80));
        var minute = (await MinutesAsync(patient))[1];
        Assert.Equal((2L, 72.0), (minute.Count, minute.Mean));
    }

    [Fact]
    public async Task Minutes_of_a_commit_applied_before_a_restart_that_the_store_showed_only_after_the_rebuild_end_up_whole()
    {
        var patient = "p-restarted";
        await fixture.CommitAndApplyAsync(patient, Heart(_base + 1_000, 60));
        await fixture.DeactivateIdleGrainsAsync();

        // The activation before the restart was handed this commit (over two minutes); the store showed none of it
        // when the activation after it rebuilt, and no call for it comes again.
        var grain = fixture.Patient(patient);
        await grain.GetLiveAsync();
        var commitId = fixture.Commit(patient, Heart(_base + 61_000, 70), Heart(_base + 121_000, 80));
        await fixture.CommitAndApplyAsync(patient, Heart(_base + 181_000, 90));
        Assert.Equal([1], (await MinutesAsync(patient)).Select(minute => minute.Count));

        // Settled once the store shows the commit, as the ingest pipeline has it after a start (ReadableAfter later):
        // the closed minutes now, the hour still open as it closes.
        await grain.SettleRebuiltAsync([new(VitalKind.HeartRate, _base + 60_000, commitId, commitId), new(VitalKind.HeartRate, _base + 120_000, commitId, commitId)]);
        Assert.Equal([60, 70, 80], (await MinutesAsync(patient)).Select(minute => minute.Max));
        var nextHour = _base + Resolution.Hour.Milliseconds();
        var readings = new[] { Heart(nextHour + 1_000, 100) };
        var unsettled = (await grain.ApplyAsync(new PatientReadings(fixture.Commit(patient, readings), readings))).Value;
        var hour = Assert.Single(await fixture.Rollups.QueryAsync(patient, VitalKind.HeartRate, Resolution.Hour, _base, nextHour));
        Assert.Equal((4L, 60.0, 90.0), (hour.Count, hour.Min, hour.Max));

        // The hour was taken from a store that may not have shown its last readings yet: settled again once it does.
        Assert.Contains(unsettled, minute => Resolution.Hour.WindowStart(minute.MinuteStartMs) == _base);
    }

    [Fact]
    public async Task A_window_just_written_to_a_store_that_shows_it_late_is_still_served_by_the_grain()
    {
        var patient = "p-recent-windows";
        var grain = fixture.Patient(patient);
        await grain.GetLiveAsync();
        await fixture.CommitAndApplyAsync(patient, Heart(_base + 1_000, 60), Heart(_base + 2_000, 62));

        // The next minute's reading closes the first: written, but the store may not show it for a while.
        await fixture.CommitAndApplyAsync(patient, Heart(_base + 61_000, 70));

        var recent = await grain.GetRecentWindowsAsync(VitalKind.HeartRate, Resolution.Minute);
        Assert.Equal([(_base, 2L), (_base + 60_000, 1L)], recent.Select(window => (window.StartMs, window.Count)));
        Assert.Equal([_base], (await grain.GetRecentWindowsAsync(VitalKind.HeartRate, Resolution.Hour)).Select(window => window.StartMs));
    }

    [Fact]
    public async Task A_settle_right_after_a_commit_the_store_answered_and_does_not_show_yet_keeps_it_in_the_minute()
    {
        var patient = "p-settle-fresh";
        await fixture.CommitAndApplyAsync(patient, Heart(_base + 1_000, 60));
        var grain = fixture.Patient(patient);
        await fixture.CommitAndApplyAsync(patient, Heart(_base + 61_000, 70));

        // A commit answered a moment ago and handed to the grain, of which the store shows one reading; the other only
        // once asked to show what it answered (VictoriaMetrics' flush), written under an id of its own when it is.
        VitalReading[] commit = [Heart(_base + 62_000, 74), Heart(_base + 63_000, 76)];
        var store = (LateShowingRawStore)fixture.SiloServices.GetRequiredService<IRawSeriesStore>();
        store.OnShowAnsweredWrites = () => fixture.Commit(patient, commit[0]);
        await grain.ApplyAsync(new PatientReadings(fixture.Commit(patient, commit[1]), commit));
        await fixture.CommitAndApplyAsync(patient, Heart(_base + 121_000, 80));
        Assert.Equal([1, 3], (await MinutesAsync(patient)).Take(2).Select(minute => minute.Count));

        // A repair's settle of the minute (a failed call's, a rebuild's) reads it from the store: the fresh commit stays in it.
        await grain.SettleAsync([new(VitalKind.HeartRate, _base + 60_000, 1, 1)]);
        var minute = (await MinutesAsync(patient))[1];
        Assert.Equal((3L, 70.0, 76.0), (minute.Count, minute.Min, minute.Max));
        Assert.Null(store.OnShowAnsweredWrites);
    }

    [Fact]
    public async Task A_settle_right_after_a_commit_a_store_that_cannot_be_asked_does_not_show_yet_hands_the_minute_back()
    {
        var patient = "p-settle-fresh-unasked";
        var (grain, hidden, commitId) = await ApplyACommitTheStoreShowsHalfOfAsync(patient);

        // A repair's settle of the minute reads it short from the store, and hands it back, with the commits applied
        // lately in it (the one before, of the minute's first reading, too).
        var again = await grain.SettleAsync([new(VitalKind.HeartRate, _base + 60_000, 1, 1)]);
        Assert.Equal(2, (await MinutesAsync(patient))[1].Count);
        var handedBack = Assert.Single(again);
        Assert.Equal((VitalKind.HeartRate, _base + 60_000, commitId), (handedBack.Kind, handedBack.MinuteStartMs, handedBack.LastCommitId));
        Assert.Equal(commitId - 1, handedBack.FirstCommitId);

        // Settled again once the store shows the commit, ReadableAfter later, as the repair has it: whole, and not handed
        // back again.
        fixture.Commit(patient, hidden);
        Assert.Empty(await SettleOnceTheStoreShowsItAsync(grain, again));

        var minute = (await MinutesAsync(patient))[1];
        Assert.Equal((3L, 70.0, 76.0), (minute.Count, minute.Min, minute.Max));
    }

    [Fact]
    public async Task A_settle_hands_back_one_minute_for_an_hour_it_read_short_of_a_commit_applied_lately()
    {
        var patient = "p-settle-fresh-hour";
        var grain = fixture.Patient(patient);
        await grain.GetLiveAsync();
        await fixture.CommitAndApplyAsync(patient, Heart(_base + 1_000, 60));

        // A commit at the hour's end, of which the store shows one reading so far; the next reading closes the hour.
        VitalReading[] commit = [Heart(_base + 3_598_000, 88), Heart(_base + 3_599_000, 90)];
        var commitId = fixture.Commit(patient, commit[0]);
        await grain.ApplyAsync(new PatientReadings(commitId, commit));
        await fixture.CommitAndApplyAsync(patient, Heart(_base + 3_601_000, 70));
        Assert.Equal(3, (await HourAsync(patient)).Count);

        // Settling two minutes of that hour that hold no reading rewrites the hour short from the store: one of them is
        // handed back for it.
        var again = await grain.SettleAsync([new(VitalKind.HeartRate, _base + 600_000, 1, 1), new(VitalKind.HeartRate, _base + 1_200_000, 1, 1)]);
        Assert.Equal(2, (await HourAsync(patient)).Count);
        var handedBack = Assert.Single(again);
        Assert.Equal((_base + 600_000, commitId), (handedBack.MinuteStartMs, handedBack.LastCommitId));

        // Settled again once the store shows the commit, ReadableAfter later: the hour whole, nothing handed back.
        fixture.Commit(patient, commit[1]);
        Assert.Empty(await SettleOnceTheStoreShowsItAsync(grain, again));

        var hour = await HourAsync(patient);
        Assert.Equal((3L, 60.0, 90.0), (hour.Count, hour.Min, hour.Max));
    }

    /// <summary>
    /// A patient's second minute (70 at its start) takes a commit answered a moment ago and handed to the grain (74 and
    /// 76), of which the store shows only 76 and cannot be asked to show 74 (InfluxDB): <c>hidden</c>, for the test to
    /// commit later (under an id of its own). Then 80 closes the minute.
    /// </summary>
    private async Task<(IPatientGrain Grain, VitalReading Hidden, long CommitId)> ApplyACommitTheStoreShowsHalfOfAsync(string patient)
    {
        await fixture.CommitAndApplyAsync(patient, Heart(_base + 1_000, 60));
        var grain = fixture.Patient(patient);
        await fixture.CommitAndApplyAsync(patient, Heart(_base + 61_000, 70));
        VitalReading[] commit = [Heart(_base + 62_000, 74), Heart(_base + 63_000, 76)];
        var commitId = fixture.Commit(patient, commit[1]);
        Assert.Empty((await grain.ApplyAsync(new PatientReadings(commitId, commit))).Value);
        await fixture.CommitAndApplyAsync(patient, Heart(_base + 121_000, 80));
        return (grain, commit[0], commitId);
    }

    /// <summary>Settles <paramref name="minutes"/> as the repair does, the store's ReadableAfter (15 s) after they were applied.</summary>
    private async Task<CommittedMinute[]> SettleOnceTheStoreShowsItAsync(IPatientGrain grain, CommittedMinute[] minutes)
    {
        var clock = fixture.SiloServices.GetRequiredService<ShiftableClock>();
        clock.Offset = TimeSpan.FromSeconds(16);
        try
        {
            return await grain.SettleAsync(minutes);
        }
        finally
        {
            clock.Offset = TimeSpan.Zero;
        }
    }

    private async Task<RollupWindow> HourAsync(string patientId) =>
        Assert.Single(await fixture.Rollups.QueryAsync(patientId, VitalKind.HeartRate, Resolution.Hour, _base, _base + 3_600_000));

    [Fact]
    public async Task The_repair_settles_again_a_minute_a_settle_hands_back_until_it_is_whole()
    {
        var patient = "p-settle-fresh-repair";
        var (_, hidden, commitId) = await ApplyACommitTheStoreShowsHalfOfAsync(patient);

        // The repair settles the minute a second after a call reported it, while the store shows 2 of its 3 readings.
        var log = fixture.SiloServices.GetRequiredService<ICommitLog>();
        var last = (await log.ReadPositionAsync()).LastCommitId;
        using var stopping = new CancellationTokenSource();
        var repair = new GrainRepair(
            log, fixture.Cluster.GrainFactory, new IngestInstruments(fixture.SiloServices.GetRequiredService<IMeterFactory>()), NullLogger.Instance,
            () => last, () => last, settleDelay: TimeSpan.FromSeconds(1));
        await repair.StartAsync(ready: new CancellationToken(canceled: true), stopping.Token);
        try
        {
            repair.AddUnsettled(patient, commitId, [new(VitalKind.HeartRate, _base + 60_000, commitId, commitId)]);
            Assert.Equal(2, (await WhenAsync(() => MinutesAsync(patient), minutes => minutes[1].Count == 2))[1].Count);

            // The settle handed it back: once the store shows the rest, the repair's next settle makes it whole.
            fixture.Commit(patient, hidden);
            var minute = (await WhenAsync(() => MinutesAsync(patient), minutes => minutes[1].Count == 3))[1];
            Assert.Equal((3L, 70.0, 76.0), (minute.Count, minute.Min, minute.Max));
        }
        finally
        {
            await stopping.CancelAsync();
        }
    }

    private Task<IReadOnlyList<RollupWindow>> MinutesAsync(string patientId) =>
        fixture.Rollups.QueryAsync(patientId, VitalKind.HeartRate, Resolution.Minute, _base, _base + 180_000);
}
