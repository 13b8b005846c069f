using Microsoft.Extensions.DependencyInjection;
using Telemetry.Core.Grains;
using Telemetry.Core.Readings;
using Telemetry.Core.Rollups;
using Telemetry.Core.Storage;
using Telemetry.Core.Vitals;
using static Telemetry.Grains.Tests.ClusterFixture;

namespace Telemetry.Grains.Tests;

/// <summary>
/// The patient grain against the real DuckDB store: readings are committed to the raw store first and then handed to
/// the grain with their commit id, exactly as the ingest pipeline does.
/// </summary>
public sealed class PatientGrainTests(ClusterFixture fixture) : IClassFixture<ClusterFixture>
{

    private readonly long _base = AnHourIntoToday();

    private IRawSeriesStore RawStore => fixture.SiloServices.GetRequiredService<IRawSeriesStore>();

    [Fact]
    public async Task Readings_show_at_once_in_the_open_minute_and_the_live_picture()
    {
        var patient = "p-open";
        await fixture.CommitAndApplyAsync(patient, Heart(_base + 1_000, 70), Heart(_base + 2_000, 80), Oxygen(_base + 3_000, 97));

        var grain = fixture.Patient(patient);
        var minute = await grain.GetOpenWindowAsync(VitalKind.HeartRate, Resolution.Minute);
        var live = await grain.GetLiveAsync();

        Assert.Equal(2, minute?.Count);
        Assert.Equal(75, minute?.Mean);
        Assert.Equal(70, minute?.Min);
        Assert.Equal(80, minute?.Max);
        Assert.Equal([VitalKind.HeartRate, VitalKind.OxygenSaturation], live.Vitals.Select(v => v.Kind));
        Assert.Equal(80, live.Vitals[0].Value);
        Assert.Equal(_base + 2_000, live.Vitals[0].TimestampMs);
    }

    [Fact]
    public async Task A_minute_that_closes_is_written_as_a_rollup()
    {
        var patient = "p-close";
        await fixture.CommitAndApplyAsync(patient, Heart(_base + 1_000, 60), Heart(_base + 30_000, 62));
        await fixture.CommitAndApplyAsync(patient, Heart(_base + 61_000, 90));

        var stored = await fixture.Rollups.QueryAsync(patient, VitalKind.HeartRate, Resolution.Minute, _base, _base + 3_600_000);

        var closed = Assert.Single(stored);
        Assert.Equal(_base, closed.StartMs);
        Assert.Equal(2, closed.Count);
        Assert.Equal(61, closed.Mean);
        Assert.Equal(90, (await fixture.Patient(patient).GetOpenWindowAsync(VitalKind.HeartRate, Resolution.Minute))?.Max);

        // The store shows it at once: the grain's recent windows are the open one only.
        Assert.Equal([_base + 60_000], (await fixture.Patient(patient).GetRecentWindowsAsync(VitalKind.HeartRate, Resolution.Minute)).Select(window => window.StartMs));
    }

    [Fact]
    public async Task Crossing_an_hour_writes_the_hour_and_keeps_the_day_open()
    {
        var patient = "p-hour";
        await fixture.CommitAndApplyAsync(patient, Heart(_base + 10_000, 50), Heart(_base + 120_000, 70));
        await fixture.CommitAndApplyAsync(patient, Heart(_base + 3_600_000 + 5_000, 100));

        var hours = await fixture.Rollups.QueryAsync(patient, VitalKind.HeartRate, Resolution.Hour, _base, _base + 7_200_000);
        var day = await fixture.Patient(patient).GetOpenWindowAsync(VitalKind.HeartRate, Resolution.Day);

        var hour = Assert.Single(hours);
        Assert.Equal(2, hour.Count);
        Assert.Equal(60, hour.Mean);
        Assert.Equal(3, day?.Count);
        Assert.Equal(Resolution.Day.WindowStart(_base), day?.StartMs);
    }

    [Fact]
    public async Task A_late_reading_recomputes_the_closed_minute_it_belongs_to()
    {
        var patient = "p-late";
        await fixture.CommitAndApplyAsync(patient, Heart(_base + 1_000, 60));
        await fixture.CommitAndApplyAsync(patient, Heart(_base + 65_000, 70));
        await fixture.CommitAndApplyAsync(patient, Heart(_base + 2_000, 80));

        var minutes = await fixture.Rollups.QueryAsync(patient, VitalKind.HeartRate, Resolution.Minute, _base, _base + 60_000);
        var hour = await fixture.Patient(patient).GetOpenWindowAsync(VitalKind.HeartRate, Resolution.Hour);

        var first = Assert.Single(minutes);
        Assert.Equal(2, first.Count);
        Assert.Equal(70, first.Mean);
        Assert.Equal(3, hour?.Count);
    }

    [Fact]
    public async Task A_reactivated_grain_rebuilds_its_windows_from_the_raw_store()
    {
        var patient = "p-rebuild";
        await fixture.CommitAndApplyAsync(patient, Heart(_base + 1_000, 60), Heart(_base + 2_000, 64));
        await fixture.CommitAndApplyAsync(patient, Heart(_base + 61_000, 90));

        await fixture.DeactivateIdleGrainsAsync();

        var grain = fixture.Patient(patient);
        Assert.Equal(1, (await grain.GetOpenWindowAsync(VitalKind.HeartRate, Resolution.Minute))?.Count);
        Assert.Equal(3, (await grain.GetOpenWindowAsync(VitalKind.HeartRate, Resolution.Hour))?.Count);
        Assert.Equal(90, (await grain.GetLiveAsync()).Vitals.Single().Value);
    }

    [Fact]
    public async Task A_grain_counts_as_holding_open_windows_until_its_deactivation_has_written_them()
    {
        var instruments = fixture.SiloServices.GetRequiredService<GrainInstruments>();
        await fixture.DeactivateIdleGrainsAsync();
        var before = instruments.PatientsHoldingOpenWindows;

        await fixture.CommitAndApplyAsync("p-holding", Heart(_base + 1_000, 60));
        Assert.Equal(before + 1, instruments.PatientsHoldingOpenWindows);

        // What a server checks once it has stopped: none left means every open window was written.
        await fixture.DeactivateIdleGrainsAsync();
        Assert.Equal(0, instruments.PatientsHoldingOpenWindows);
        Assert.Single(await fixture.Rollups.QueryAsync("p-holding", VitalKind.HeartRate, Resolution.Minute, _base, _base + 60_000));
    }

    [Fact]
    public async Task A_commit_the_activation_already_read_is_not_counted_twice()
    {
        var patient = "p-race";

        // The grain activates (and reads the raw store) between the commit and the pipeline's call.
        var commitId = fixture.Commit(patient, Heart(_base + 1_000, 60), Heart(_base + 2_000, 62));
        var grain = fixture.Patient(patient);
        await grain.GetLiveAsync();
        await grain.ApplyAsync(new PatientReadings(commitId, [Heart(_base + 1_000, 60), Heart(_base + 2_000, 62)]));

        Assert.Equal(2, (await grain.GetOpenWindowAsync(VitalKind.HeartRate, Resolution.Minute))?.Count);
    }

    [Fact]
    public async Task A_flush_of_several_batches_is_folded_whole_and_crosses_silos_whole()
    {
        var patient = "p-batches";
        var grain = fixture.Patient(patient);
        await grain.GetLiveAsync();
        VitalReading[] first = [Heart(_base + 1_000, 60), Heart(_base + 2_000, 62)];
        VitalReading[] second = [Heart(_base + 3_000, 64)];
        VitalReading[] third = [Oxygen(_base + 4_000, 97), Heart(_base + 5_000, 70)];
        var readings = new PatientReadings(fixture.Commit(patient, [.. first, .. second, .. third]), first) { MoreReadings = [second, third] };

        await grain.ApplyAsync(readings);

        var minute = await grain.GetOpenWindowAsync(VitalKind.HeartRate, Resolution.Minute);
        Assert.Equal(4, minute?.Count);
        Assert.Equal(70, minute?.Max);
        Assert.Equal(97, (await grain.GetLiveAsync()).Vitals.Single(vital => vital.Kind == VitalKind.OxygenSaturation).Value);

        // Between silos the call is serialized: the further batches go with it.
        var serializer = fixture.SiloServices.GetRequiredService<Orleans.Serialization.Serializer>();
        var copy = serializer.Deserialize<PatientReadings>(serializer.SerializeToArray(readings));
        Assert.NotNull(copy);
        Assert.Equal([.. first, .. second, .. third], Listed(copy));
    }

    [Fact]
    public async Task Readings_from_before_the_rebuilt_days_are_recomputed_into_stored_rollups()
    {
        var patient = "p-backfill";
        var threeDaysAgo = _base - (3 * Resolution.Day.Milliseconds());
        await fixture.CommitAndApplyAsync(patient, Heart(_base + 1_000, 70));

        // A phone back online uploads readings of a vital the grain has no window for, from days ago, in two parts.
        await fixture.CommitAndApplyAsync(patient, Oxygen(threeDaysAgo + 1_000, 90), Oxygen(threeDaysAgo + 2_000, 92));
        await fixture.CommitAndApplyAsync(patient, Oxygen(threeDaysAgo + 10_000, 95));

        var minute = Assert.Single(await fixture.Rollups.QueryAsync(patient, VitalKind.OxygenSaturation, Resolution.Minute, threeDaysAgo, threeDaysAgo + 60_000));
        var day = Assert.Single(await fixture.Rollups.QueryAsync(patient, VitalKind.OxygenSaturation, Resolution.Day, Resolution.Day.WindowStart(threeDaysAgo), threeDaysAgo + 1));
        Assert.Equal(3, minute.Count);
        Assert.Equal(95, minute.Max);
        Assert.Equal(3, day.Count);
        Assert.Null(await fixture.Patient(patient).GetOpenWindowAsync(VitalKind.OxygenSaturation, Resolution.Minute));
    }

    [Fact]
    public async Task Minutes_whose_call_was_lost_are_recomputed_once_however_often_asked()
    {
        var patient = "p-lost-call";
        var threeDaysAgo = _base - (3 * Resolution.Day.Milliseconds());
        await fixture.CommitAndApplyAsync(patient, Heart(_base + 1_000, 70));

        // Committed, but the call that carried them never arrived: readings from days ago and one from today.
        var commitId = fixture.Commit(patient, Heart(threeDaysAgo + 1_000, 80), Heart(threeDaysAgo + 2_000, 90), Heart(_base + 2_000, 74));
        CommittedMinute[] minutes = [new(VitalKind.HeartRate, threeDaysAgo, commitId, commitId), new(VitalKind.HeartRate, _base, commitId, commitId)];
        Assert.Empty(await fixture.Rollups.QueryAsync(patient, VitalKind.HeartRate, Resolution.Minute, threeDaysAgo, threeDaysAgo + 60_000));
        Assert.Equal(1, (await fixture.Patient(patient).GetOpenWindowAsync(VitalKind.HeartRate, Resolution.Minute))?.Count);

        // A repair may be asked for again (a restart repeats what may already be done): nothing counts twice.
        for (var i = 0; i < 2; i++)
        {
            await fixture.Patient(patient).RecomputeAsync(minutes);

            var minute = Assert.Single(await fixture.Rollups.QueryAsync(patient, VitalKind.HeartRate, Resolution.Minute, threeDaysAgo, threeDaysAgo + 60_000));
            var hour = Assert.Single(await fixture.Rollups.QueryAsync(patient, VitalKind.HeartRate, Resolution.Hour, threeDaysAgo, threeDaysAgo + 1));
            var day = Assert.Single(await fixture.Rollups.QueryAsync(patient, VitalKind.HeartRate, Resolution.Day, Resolution.Day.WindowStart(threeDaysAgo), threeDaysAgo + 1));
            Assert.Equal((2, 90), (minute.Count, minute.Max));
            Assert.Equal(2, hour.Count);
            Assert.Equal(2, day.Count);
            Assert.Equal(2, (await fixture.Patient(patient).GetOpenWindowAsync(VitalKind.HeartRate, Resolution.Minute))?.Count);
            Assert.Equal(74, (await fixture.Patient(patient).GetLiveAsync()).Vitals.Single().Value);
        }
    }

    [Fact]
    public async Task Settling_late_minutes_recomputes_their_closed_windows_from_the_store_and_leaves_open_ones_alone()
    {
        var patient = "p-settle";
        var threeDaysAgo = _base - (3 * Resolution.Day.Milliseconds());

        // The embedded store shows a commit at once: no call leaves anything to settle.
        var today = Heart(_base + 1_000, 70);
        Assert.Empty((await fixture.Patient(patient).ApplyAsync(new PatientReadings(fixture.Commit(patient, today), [today]))).Value);
        var late = Heart(threeDaysAgo + 1_000, 80);
        Assert.Empty((await fixture.Patient(patient).ApplyAsync(new PatientReadings(fixture.Commit(patient, late), [late]))).Value);

        // What a store that shows commits late had not shown when the late window was recomputed: one more reading in
        // that minute, and one in the open minute the grain was never handed.
        var commitId = fixture.Commit(patient, Heart(threeDaysAgo + 2_000, 90), Heart(_base + 2_000, 74));
        for (var i = 0; i < 2; i++)
        {
            await fixture.Patient(patient).SettleAsync([new(VitalKind.HeartRate, threeDaysAgo, commitId, commitId), new(VitalKind.HeartRate, _base, commitId, commitId)]);
            var minute = Assert.Single(await fixture.Rollups.QueryAsync(patient, VitalKind.HeartRate, Resolution.Minute, threeDaysAgo, threeDaysAgo + 60_000));
            var day = Assert.Single(await fixture.Rollups.QueryAsync(patient, VitalKind.HeartRate, Resolution.Day, Resolution.Day.WindowStart(threeDaysAgo), threeDaysAgo + 1));
            Assert.Equal((2, 90), (minute.Count, minute.Max));
            Assert.Equal(2, day.Count);
            Assert.Equal(1, (await fixture.Patient(patient).GetOpenWindowAsync(VitalKind.HeartRate, Resolution.Minute))?.Count);
        }
    }

    private static List<VitalReading> Listed(PatientReadings readings)
    {
        var all = new List<VitalReading>();
        foreach (var reading in readings.All)
        {
            all.Add(reading);
        }

        return all;
    }
}
