using Microsoft.Extensions.DependencyInjection;
using Telemetry.Core.Grains;
using Telemetry.Core.Readings;
using Telemetry.Core.Rollups;
using Telemetry.Core.Vitals;
using static Telemetry.Grains.Tests.ClusterFixture;

namespace Telemetry.Grains.Tests;

/// <summary>
/// A patient grain that stays active while days pass (its clock moved on): what it holds from a day that has ended
/// reaches the rollup store, where an activation days later, which rebuilds only yesterday and today, cannot.
/// </summary>
public sealed class PatientGrainDayTests(ClusterFixture fixture) : IClassFixture<ClusterFixture>, IDisposable
{
    private static readonly long Day = Resolution.Day.Milliseconds();

    // An hour into today (UTC), by the clock before any test moves it.
    private readonly long _base = AnHourIntoToday();

    private ShiftableClock Clock => fixture.SiloServices.GetRequiredService<ShiftableClock>();

    public void Dispose() => Clock.Offset = TimeSpan.Zero;

    [Fact]
    public async Task A_vital_that_stopped_has_its_open_windows_written_once_its_day_is_over()
    {
        var patient = "p-stopped-vital";
        await fixture.CommitAndApplyAsync(patient, Heart(_base + 1_000, 70), Oxygen(_base + 1_000, 96), Oxygen(_base + 2_000, 98));

        // The oximeter stops; the heart rate goes on the next day and keeps the grain active.
        Clock.Offset = TimeSpan.FromDays(1);
        await fixture.CommitAndApplyAsync(patient, Heart(_base + Day + 1_000, 72));

        foreach (var resolution in ResolutionExtensions.All)
        {
            var window = Assert.Single(await fixture.Rollups.QueryAsync(patient, VitalKind.OxygenSaturation, resolution, resolution.WindowStart(_base), _base + 1));
            Assert.Equal((2, 97.0), (window.Count, window.Mean));
        }
    }

    [Fact]
    public async Task A_patient_kept_active_by_reads_alone_has_an_ended_days_windows_written()
    {
        // The device stops; no alert rule runs a timer; a dashboard reads the live view every second, so the grain
        // never goes idle. Two days on, the day it left open is in the store, where a crash cannot take it.
        var patient = "p-read-only";
        await fixture.CommitAndApplyAsync(patient, Heart(_base + 1_000, 70), Heart(_base + 2_000, 74));

        Clock.Offset = TimeSpan.FromDays(2);
        await fixture.Patient(patient).GetLiveAsync();

        // Written in a turn of the grain's own, just after the read.
        foreach (var resolution in ResolutionExtensions.All)
        {
            var windows = await WhenAsync(
                () => fixture.Rollups.QueryAsync(patient, VitalKind.HeartRate, resolution, resolution.WindowStart(_base), _base + 1),
                stored => stored.Count > 0);
            Assert.Equal((2, 72.0), (Assert.Single(windows).Count, windows[0].Mean));
        }
    }

    [Fact]
    public async Task An_ended_days_windows_that_could_not_be_written_are_written_at_a_later_read()
    {
        var patient = "p-read-only-store-away";
        var store = fixture.SiloServices.GetRequiredService<RefusingRollupStore>();
        await fixture.CommitAndApplyAsync(patient, Heart(_base + 1_000, 70));

        // Two days on, the store refuses the ended day's windows as a read schedules them; once it is back, the next
        // read writes them.
        Clock.Offset = TimeSpan.FromDays(2);
        store.Refuse(patient);
        var refused = store.Refusals;
        try
        {
            await fixture.Patient(patient).GetLiveAsync();
            Assert.True(await WhenAsync(() => Task.FromResult(store.Refusals), refusals => refusals > refused) > refused);
        }
        finally
        {
            store.Refuse(null);
        }

        Assert.Empty(await fixture.Rollups.QueryAsync(patient, VitalKind.HeartRate, Resolution.Day, Resolution.Day.WindowStart(_base), _base + 1));
        await fixture.Patient(patient).GetLiveAsync();
        var day = await WhenAsync(
            () => fixture.Rollups.QueryAsync(patient, VitalKind.HeartRate, Resolution.Day, Resolution.Day.WindowStart(_base), _base + 1),
            stored => stored.Count > 0);
        Assert.Equal((1, 70.0), (Assert.Single(day).Count, day[0].Mean));
    }

    [Fact]
    public async Task A_late_upload_into_a_stopped_vitals_ended_day_reaches_the_store_before_the_call_answers()
    {
        var patient = "p-stopped-vital-upload";
        await fixture.CommitAndApplyAsync(patient, Heart(_base + 1_000, 70), Oxygen(_base + 61_000, 96));

        // Two days on (the oximeter's windows were written when its day ended), the phone uploads more of that day's
        // oximetry: a reading into the minute still open, then one into an earlier minute of the open hour (the open
        // hour and day take it), each into the windows of a day the next activation would not rebuild.
        Clock.Offset = TimeSpan.FromDays(2);
        await fixture.CommitAndApplyAsync(patient, Heart(_base + (2 * Day) + 1_000, 72));
        await fixture.CommitAndApplyAsync(patient, Oxygen(_base + 62_000, 98));
        await AssertOxygenAsync(hourAndDay: (2, 97.0), minutes: [(2, 97.0)]);
        await fixture.CommitAndApplyAsync(patient, Oxygen(_base + 2_000, 100));

        // A crash now loses nothing: the store has them.
        await AssertOxygenAsync(hourAndDay: (3, 98.0), minutes: [(1, 100.0), (2, 97.0)]);

        async Task AssertOxygenAsync((long Count, double Mean) hourAndDay, (long Count, double Mean)[] minutes)
        {
            foreach (var resolution in new[] { Resolution.Hour, Resolution.Day })
            {
                var window = Assert.Single(await fixture.Rollups.QueryAsync(patient, VitalKind.OxygenSaturation, resolution, resolution.WindowStart(_base), _base + 1));
                Assert.Equal(hourAndDay, (window.Count, window.Mean));
            }

            var stored = await fixture.Rollups.QueryAsync(patient, VitalKind.OxygenSaturation, Resolution.Minute, _base, _base + 120_000);
            Assert.Equal(minutes, stored.Select(minute => (minute.Count, minute.Mean)));
        }
    }

    [Fact]
    public async Task A_vital_last_seen_before_yesterday_stays_in_the_live_view_of_the_next_activation()
    {
        var patient = "p-weekly-scale";
        await fixture.CommitAndApplyAsync(patient, Heart(_base + 1_000, 70), new VitalReading(VitalKind.BodyWeight, _base + 61_000, 80.5));

        // Three days on the grain has gone (its open windows written as it went); the watch goes on, the scale does not.
        Clock.Offset = TimeSpan.FromDays(3);
        await fixture.DeactivateIdleGrainsAsync();
        await fixture.CommitAndApplyAsync(patient, Heart(_base + (3 * Day) + 1_000, 72));

        var live = await fixture.Patient(patient).GetLiveAsync();

        Assert.Equal(
            [(VitalKind.HeartRate, 72.0, _base + (3 * Day) + 1_000), (VitalKind.BodyWeight, 80.5, _base + 61_000)],
            live.Vitals.Select(vital => (vital.Kind, vital.Value, vital.TimestampMs)));
        var minute = live.Vitals[1].CurrentMinute;
        Assert.Equal((_base + 60_000, 1L, 80.5), (minute.StartMs, minute.Count, minute.Last));

        // The phone then uploads a weighing of the day after (still before the days the grain rebuilt): the latest now.
        await fixture.CommitAndApplyAsync(patient, new VitalReading(VitalKind.BodyWeight, _base + Day + 61_000, 80.1));
        var later = await fixture.Patient(patient).GetLiveAsync();
        Assert.Equal((80.1, _base + Day + 61_000), (later.Vitals[1].Value, later.Vitals[1].TimestampMs));

        // And one an hour after it whose call never came, handed to the grain by a repair.
        var lost = fixture.Commit(patient, new VitalReading(VitalKind.BodyWeight, _base + Day + 3_601_000, 79.9));
        await fixture.Patient(patient).RecomputeAsync([new CommittedMinute(VitalKind.BodyWeight, _base + Day + 3_600_000, lost, lost)]);
        var repaired = await fixture.Patient(patient).GetLiveAsync();
        Assert.Equal((79.9, _base + Day + 3_601_000), (repaired.Vitals[1].Value, repaired.Vitals[1].TimestampMs));
    }

    [Fact]
    public async Task A_repair_days_after_the_activation_recomputes_a_day_the_grain_no_longer_rebuilds()
    {
        var patient = "p-repair-later";
        await fixture.CommitAndApplyAsync(patient, Heart(_base + 1_000, 60));

        // A reading of the same minute whose call never arrived; the repair comes two days on, to the same activation.
        var lost = fixture.Commit(patient, Heart(_base + 2_000, 80));
        Clock.Offset = TimeSpan.FromDays(2);
        await fixture.Patient(patient).RecomputeAsync([new CommittedMinute(VitalKind.HeartRate, _base, lost, lost)]);

        foreach (var resolution in ResolutionExtensions.All)
        {
            var window = Assert.Single(await fixture.Rollups.QueryAsync(patient, VitalKind.HeartRate, resolution, resolution.WindowStart(_base), _base + 1));
            Assert.Equal((2, 70.0), (window.Count, window.Mean));
        }
    }
}
