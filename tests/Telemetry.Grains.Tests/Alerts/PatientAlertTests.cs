using Microsoft.Extensions.DependencyInjection;
using Telemetry.Core.Alerts;
using Telemetry.Core.Grains;
using Telemetry.Core.Readings;
using Telemetry.Core.Rollups;
using Telemetry.Core.Storage;
using Telemetry.Core.Vitals;

namespace Telemetry.Grains.Tests.Alerts;

/// <summary>Alerts in the patient's grain, in Orleans' test cluster over a real DuckDB file: raised, stored, published, timed.</summary>
public sealed class PatientAlertTests(ClusterFixture fixture) : IClassFixture<ClusterFixture>
{
    private static readonly AlertRuleSet HeartRules = new(
    [
        new AlertRule("hr-high", AlertRuleType.Threshold, AlertPriority.High, VitalKind.HeartRate, AlertDirection.Above, 120, 110, EscalateAfterSeconds: 600),
        new AlertRule("implausible", AlertRuleType.Implausible, AlertPriority.Low),
    ]);

    private IAlertStore Store => fixture.SiloServices.GetRequiredService<IAlertStore>();

    private RecordingAlertPublisher Publisher => fixture.SiloServices.GetRequiredService<RecordingAlertPublisher>();

    private static long Now => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();

    [Fact]
    public async Task A_reading_over_the_threshold_raises_an_alert_that_is_stored_and_published()
    {
        var patient = "p-alert-raise";
        await fixture.Patient(patient).SetAlertRulesAsync(HeartRules);

        await fixture.CommitAndApplyAsync(patient, new VitalReading(VitalKind.HeartRate, Now, 80));
        await fixture.CommitAndApplyAsync(patient, new VitalReading(VitalKind.HeartRate, Now + 1, 135));

        var open = Assert.Single(await fixture.Patient(patient).GetOpenAlertsAsync());
        Assert.Equal("hr-high", open.RuleId);
        Assert.Equal(AlertStatus.Active, open.Status);
        Assert.NotNull(open.EscalatesAt);
        var published = Assert.Single(Publisher.Of(patient));
        Assert.Equal(AlertEventType.Raised, published.Type);
        Assert.True(published.Position > 0);
        Assert.Equal(open, await Store.GetAsync(open.AlertId));
        Assert.Contains(patient, await Store.WatchedPatientsAsync());
    }

    [Fact]
    public async Task A_spot_check_past_the_level_is_raised_by_the_grains_clock_once_its_sustain_has_passed()
    {
        var patient = "p-alert-spot-check";
        var clock = fixture.SiloServices.GetRequiredService<ShiftableClock>();
        await fixture.Patient(patient).SetAlertRulesAsync(new AlertRuleSet(
            [new AlertRule("spo2-low", AlertRuleType.Threshold, AlertPriority.High, VitalKind.OxygenSaturation, AlertDirection.Below, 90, 92, SustainSeconds: 60)]));

        // Between spot checks the patient's grain has gone: the check's commit wakes it, which judges the commit from the
        // store, and then the call brings the same reading again.
        await fixture.DeactivateIdleGrainsAsync();
        var grainId = fixture.Patient(patient).GetGrainId();
        Assert.DoesNotContain(grainId, await fixture.Cluster.GrainFactory.GetGrain<IManagementGrain>(0).GetActiveGrains(grainId.Type));
        var checkedAt = Now;

        // One SpO2 reading, and no SpO2 after it: only the grain's timer can raise it. Three minutes on (the clock shifted),
        // a heart rate from the patient's watch, which leaves the SpO2's spot check alone, has the timer look again.
        await fixture.CommitAndApplyAsync(patient, new VitalReading(VitalKind.OxygenSaturation, checkedAt, 85));
        Assert.Empty(Publisher.Of(patient));
        clock.Offset = TimeSpan.FromMinutes(3);
        try
        {
            await fixture.CommitAndApplyAsync(patient, new VitalReading(VitalKind.HeartRate, Now + 180_000, 70));
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (Publisher.Of(patient).Count == 0 && DateTime.UtcNow < deadline)
            {
                await Task.Delay(100);
            }
        }
        finally
        {
            clock.Offset = TimeSpan.Zero;
        }

        var raised = Assert.Single(Publisher.Of(patient));
        Assert.Equal((AlertEventType.Raised, "spo2-low", 85d), (raised.Type, raised.Alert.RuleId, raised.Alert.Value));
        Assert.Equal(checkedAt + 60_000, raised.Alert.TriggeredAt.ToUnixTimeMilliseconds());
    }

    [Fact]
    public async Task A_batch_sent_newest_first_is_judged_in_time_order()
    {
        var patient = "p-alert-newest-first";
        await fixture.Patient(patient).SetAlertRulesAsync(new AlertRuleSet(
            [new AlertRule("spo2-low", AlertRuleType.Threshold, AlertPriority.High, VitalKind.OxygenSaturation, AlertDirection.Below, 90, 92, SustainSeconds: 60)]));
        var start = Now - 240_000;

        // Five minutes of SpO2 86, one a minute, the newest first: judged so, only the newest would count.
        await fixture.CommitAndApplyAsync(patient, [.. Enumerable.Range(0, 5).Reverse().Select(minute => new VitalReading(VitalKind.OxygenSaturation, start + (minute * 60_000L), 86))]);

        var open = Assert.Single(await fixture.Patient(patient).GetOpenAlertsAsync());
        Assert.Equal(start + 60_000, open.TriggeredAt.ToUnixTimeMilliseconds());
    }

    [Fact]
    public async Task A_device_whose_clock_runs_fast_is_judged_and_a_device_set_right_after_it_is_judged_too()
    {
        var patient = "p-alert-fast-clock";
        await fixture.Patient(patient).SetAlertRulesAsync(new AlertRuleSet(
            [new AlertRule("hr-high", AlertRuleType.Threshold, AlertPriority.High, VitalKind.HeartRate, AlertDirection.Above, 120, 110, SustainSeconds: 20)]));
        var clock = fixture.SiloServices.GetRequiredService<ShiftableClock>();
        try
        {
            // A watch five minutes fast sends heart rate 135 every 10 s for 30 s: judged as each comes, the 20 s sustain
            // holds on the clock; the alert triggered when it was raised, not five minutes on.
            var start = Now;
            for (var second = 0; second <= 30; second += 10)
            {
                clock.Offset = TimeSpan.FromSeconds(second);
                await fixture.CommitAndApplyAsync(patient, ClusterFixture.Heart(start + 300_000 + (second * 1_000L), 135));
            }

            var open = Assert.Single(await fixture.Patient(patient).GetOpenAlertsAsync());
            Assert.True(open.TriggeredAt <= open.RaisedAt);

            // Then a chest strap set right sends heart rate 90 every 10 s for 20 s. Judged (not passed over as older than
            // the watch's readings until the clock reaches them), it clears the alert.
            for (var second = 40; second <= 60; second += 10)
            {
                clock.Offset = TimeSpan.FromSeconds(second);
                await fixture.CommitAndApplyAsync(patient, ClusterFixture.Heart(start + (second * 1_000L), 90));
            }

            Assert.Empty(await fixture.Patient(patient).GetOpenAlertsAsync());
        }
        finally
        {
            clock.Offset = TimeSpan.Zero;
        }
    }

    [Fact]
    public async Task Readings_stamped_ahead_that_wake_the_patients_grain_are_judged_once()
    {
        var patient = "p-alert-fast-clock-wakes";
        await fixture.Patient(patient).SetAlertRulesAsync(new AlertRuleSet(
            [new AlertRule("hr-high", AlertRuleType.Threshold, AlertPriority.High, VitalKind.HeartRate, AlertDirection.Above, 120, 110, RearmSeconds: 300)]));
        await fixture.CommitAndApplyAsync(patient, ClusterFixture.Heart(Now, 80));
        await fixture.DeactivateIdleGrainsAsync();

        // The call wakes the grain, whose activation judges the commit from the store first; the call then gives the
        // same readings again. Judged twice, the 90 would clear what the 135 raised.
        var watch = Now + 240_000;
        await fixture.CommitAndApplyAsync(patient, ClusterFixture.Heart(watch, 90), ClusterFixture.Heart(watch + 10_000, 135));

        Assert.Equal("hr-high", Assert.Single(await fixture.Patient(patient).GetOpenAlertsAsync()).RuleId);
        Assert.Equal([AlertEventType.Raised], Publisher.Of(patient).Select(published => published.Type));
    }

    [Fact]
    public async Task A_batch_of_each_vital_in_turn_is_scored_moment_by_moment_across_its_vitals()
    {
        var patient = "p-alert-news2-batch";
        await fixture.Patient(patient).SetAlertRulesAsync(new AlertRuleSet(
            [new AlertRule("news2-medium", AlertRuleType.EarlyWarning, AlertPriority.Medium, Direction: AlertDirection.Above, Level: 5, ClearLevel: 3, RearmSeconds: 300)]));
        var start = Now - 120_000;

        // Heart rate 135 (3 points), SpO2 97 (0), respiratory rate 22 (2): NEWS2 5, raised.
        await fixture.CommitAndApplyAsync(patient,
            new VitalReading(VitalKind.HeartRate, start, 135), new VitalReading(VitalKind.OxygenSaturation, start, 97), new VitalReading(VitalKind.RespiratoryRate, start, 22));
        Assert.Equal("news2-medium", Assert.Single(await fixture.Patient(patient).GetOpenAlertsAsync()).RuleId);

        // A minute on, the heart rate falls to 85 (0) as the SpO2 falls to 91 (3): still 5 at every second. The batch
        // holds the minute's heart rates, then its SpO2 (as a device sends each vital's series): scored heart rate by
        // heart rate with the SpO2 of before, the score would read 2 and clear the alert.
        var seconds = Enumerable.Range(0, 30).Select(second => start + 60_000 + (second * 1_000L)).ToArray();
        await fixture.CommitAndApplyAsync(patient,
            [.. seconds.Select(at => new VitalReading(VitalKind.HeartRate, at, 85)), .. seconds.Select(at => new VitalReading(VitalKind.OxygenSaturation, at, 91))]);

        Assert.Equal("news2-medium", Assert.Single(await fixture.Patient(patient).GetOpenAlertsAsync()).RuleId);
        Assert.Equal([AlertEventType.Raised], Publisher.Of(patient).Select(e => e.Type));
    }

    [Fact]
    public async Task A_long_sustain_under_way_is_carried_across_a_deactivation()
    {
        var patient = "p-alert-long-sustain";
        await fixture.Patient(patient).SetAlertRulesAsync(new AlertRuleSet(
            [new AlertRule("hr-sustained", AlertRuleType.Threshold, AlertPriority.Medium, VitalKind.HeartRate, AlertDirection.Above, 120, SustainSeconds: 1_200)]));
        var clock = fixture.SiloServices.GetRequiredService<ShiftableClock>();
        var start = Now;
        try
        {
            // Fifteen minutes of a heart rate over 120, one every five as it comes: a sustain of twenty minutes under way,
            // no alert yet.
            for (var minute = 0; minute <= 15; minute += 5)
            {
                clock.Offset = TimeSpan.FromMinutes(minute);
                await fixture.CommitAndApplyAsync(patient, new VitalReading(VitalKind.HeartRate, start + (minute * 60_000L), 130));
            }

            Assert.Empty(await fixture.Patient(patient).GetOpenAlertsAsync());

            // The grain goes idle (a deploy, a patient moved to another server) and comes back on a reading 25 minutes
            // into the condition: the sustain carried on, it raises. Started over from what an activation reads again
            // (the last 15 minutes), it would wait till twenty minutes after its first reading of those.
            await fixture.DeactivateIdleGrainsAsync();
            clock.Offset = TimeSpan.FromMinutes(25);
            await fixture.CommitAndApplyAsync(patient, new VitalReading(VitalKind.HeartRate, start + (25 * 60_000L), 130));

            var open = Assert.Single(await fixture.Patient(patient).GetOpenAlertsAsync());
            Assert.Equal("hr-sustained", open.RuleId);
        }
        finally
        {
            clock.Offset = TimeSpan.Zero;
        }
    }

    [Fact]
    public async Task An_activation_scores_with_the_values_judged_after_the_last_write_that_are_too_old_to_judge_again()
    {
        var patient = "p-alert-news2-restore";
        await fixture.Patient(patient).SetAlertRulesAsync(new AlertRuleSet(
            [new AlertRule("news2-medium", AlertRuleType.EarlyWarning, AlertPriority.Medium, Direction: AlertDirection.Above, Level: 5, ClearLevel: 3)]));
        var clock = fixture.SiloServices.GetRequiredService<ShiftableClock>();
        var start = Now;
        try
        {
            // SpO2 97 (0), respiratory rate 25 (3), heart rate 115 (2): NEWS2 5, raised (the state written with it).
            await fixture.CommitAndApplyAsync(patient,
                new VitalReading(VitalKind.OxygenSaturation, start, 97), new VitalReading(VitalKind.RespiratoryRate, start, 25), new VitalReading(VitalKind.HeartRate, start, 115));
            Assert.Single(await fixture.Patient(patient).GetOpenAlertsAsync());
            await fixture.DeactivateIdleGrainsAsync();

            // Five minutes on the SpO2 falls to 91 (3): 8, no event, nothing written. The grain goes idle again.
            clock.Offset = TimeSpan.FromMinutes(5);
            await fixture.CommitAndApplyAsync(patient, new VitalReading(VitalKind.OxygenSaturation, start + 300_000, 91));
            await fixture.DeactivateIdleGrainsAsync();

            // Twenty-five minutes on, breathing and pulse settle (0 and 0): the score is 3, the SpO2's red score, still
            // open. The activation must score with the SpO2 of 91, judged after the last write and now too old to judge
            // again, not the 97 the write recorded (which would read 0 and clear the alert).
            clock.Offset = TimeSpan.FromMinutes(25);
            await fixture.CommitAndApplyAsync(patient,
                new VitalReading(VitalKind.RespiratoryRate, start + 1_500_000, 16), new VitalReading(VitalKind.HeartRate, start + 1_500_000, 85));

            Assert.Equal("news2-medium", Assert.Single(await fixture.Patient(patient).GetOpenAlertsAsync()).RuleId);
            Assert.Equal([AlertEventType.Raised], Publisher.Of(patient).Select(e => e.Type));
        }
        finally
        {
            clock.Offset = TimeSpan.Zero;
        }
    }

    [Fact]
    public async Task A_reading_whose_call_was_lost_is_judged_when_repaired_and_only_once()
    {
        var patient = "p-alert-lost-call";
        var now = await WatchedWithANormalHeartRateAsync(patient);

        // Committed (and acked), but its call was lost with the process: the repair brings it back, judged.
        var high = new VitalReading(VitalKind.HeartRate, now + 1, 150);
        var commitId = fixture.Commit(patient, high);
        Assert.Empty(await fixture.Patient(patient).GetOpenAlertsAsync());
        CommittedMinute[] minutes = [new(VitalKind.HeartRate, Resolution.Minute.WindowStart(high.TimestampMs), commitId, commitId)];
        for (var i = 0; i < 2; i++)
        {
            await fixture.Patient(patient).RecomputeAsync(minutes);
            Assert.Equal("hr-high", Assert.Single(await fixture.Patient(patient).GetOpenAlertsAsync()).RuleId);
            Assert.Equal([AlertEventType.Raised], Publisher.Of(patient).Select(e => e.Type));
        }

        // A reading the grain was handed is not judged again by a repair that covers it.
        await fixture.CommitAndApplyAsync(patient, new VitalReading(VitalKind.HeartRate, now + 2, 90));
        Assert.Empty(await fixture.Patient(patient).GetOpenAlertsAsync());
        await fixture.Patient(patient).RecomputeAsync(minutes);
        Assert.Empty(await fixture.Patient(patient).GetOpenAlertsAsync());
        Assert.Equal([AlertEventType.Raised, AlertEventType.Cleared], Publisher.Of(patient).Select(e => e.Type));
    }

    [Fact]
    public async Task A_reading_kept_from_the_rules_by_a_crash_is_judged_when_the_grain_comes_back_before_newer_ones()
    {
        var patient = "p-alert-crash";
        var now = await WatchedWithANormalHeartRateAsync(patient);

        // Acked, then the process died before its call: the grain that comes back with the device's next reading
        // judges the lost one first, in time order.
        fixture.Commit(patient, new VitalReading(VitalKind.HeartRate, now + 1, 150));
        await fixture.DeactivateIdleGrainsAsync();
        await fixture.CommitAndApplyAsync(patient, new VitalReading(VitalKind.HeartRate, now + 2, 85));

        Assert.Equal([AlertEventType.Raised, AlertEventType.Cleared], Publisher.Of(patient).Select(e => e.Type));
        Assert.Equal(150, Publisher.Of(patient).First().Alert.Value);

        // And once only: the next activation finds them judged.
        await fixture.DeactivateIdleGrainsAsync();
        await fixture.CommitAndApplyAsync(patient, new VitalReading(VitalKind.HeartRate, now + 3, 84));
        Assert.Equal([AlertEventType.Raised, AlertEventType.Cleared], Publisher.Of(patient).Select(e => e.Type));
    }

    [Fact]
    public async Task A_rate_under_way_when_the_grain_deactivates_is_seen_by_the_next_activation_from_its_first_reading()
    {
        var patient = "p-alert-rate-restart";
        await fixture.Patient(patient).SetAlertRulesAsync(new AlertRuleSet(
        [
            new AlertRule("glucose-falling", AlertRuleType.RateOfChange, AlertPriority.High, VitalKind.BloodGlucose, AlertDirection.Falling, 2, 1, WindowSeconds: 600),
            new AlertRule("hr-high", AlertRuleType.Threshold, AlertPriority.High, VitalKind.HeartRate, AlertDirection.Above, 120, 110),
        ]));
        var now = Now;

        // A CGM every minute, falling 3 mg/dL a minute: two readings, too few for a rate, before the grain goes (a
        // restart, a move to another server). An alert of another rule wrote the state after them, with how far the
        // rules had judged: the next activation does not judge them again.
        await fixture.CommitAndApplyAsync(patient, new VitalReading(VitalKind.BloodGlucose, now - 300_000, 140));
        await fixture.CommitAndApplyAsync(patient, new VitalReading(VitalKind.BloodGlucose, now - 240_000, 137));
        await fixture.CommitAndApplyAsync(patient, new VitalReading(VitalKind.HeartRate, now - 230_000, 130));
        await fixture.DeactivateIdleGrainsAsync();

        // Three more after it: on their own they cover two minutes, under the third of the window a rate needs; with the
        // two before, four minutes.
        await fixture.CommitAndApplyAsync(patient, new VitalReading(VitalKind.BloodGlucose, now - 180_000, 134));
        await fixture.CommitAndApplyAsync(patient, new VitalReading(VitalKind.BloodGlucose, now - 120_000, 131));
        Assert.Equal(["hr-high"], (await fixture.Patient(patient).GetOpenAlertsAsync()).Select(alert => alert.RuleId));
        await fixture.CommitAndApplyAsync(patient, new VitalReading(VitalKind.BloodGlucose, now - 60_000, 128));

        var open = Assert.Single(await fixture.Patient(patient).GetOpenAlertsAsync(), alert => alert.RuleId == "glucose-falling");
        Assert.InRange(open.Value!.Value, 2.9, 3.1);
        Assert.Equal(["hr-high", "glucose-falling"], Publisher.Of(patient).Select(e => e.Alert.RuleId));
    }

    [Fact]
    public async Task A_score_over_several_vitals_judged_again_after_a_crash_keeps_every_vital_it_had()
    {
        var patient = "p-alert-news2-crash";
        await fixture.Patient(patient).SetAlertRulesAsync(new AlertRuleSet(
            [new AlertRule("news2-medium", AlertRuleType.EarlyWarning, AlertPriority.Medium, Direction: AlertDirection.Above, Level: 5, RearmSeconds: 900)]));
        var now = Now;

        // A cuff's systolic pressure (3 points), then the oxygen saturation (2 points): NEWS2 5, raised.
        await fixture.CommitAndApplyAsync(patient, new VitalReading(VitalKind.SystolicPressure, now - 600_000, 88));
        await fixture.CommitAndApplyAsync(patient, new VitalReading(VitalKind.OxygenSaturation, now - 540_000, 93));
        Assert.Equal("news2-medium", Assert.Single(await fixture.Patient(patient).GetOpenAlertsAsync()).RuleId);

        // The oxygen goes on at 93, but the process dies before those calls (nothing was written after the raise): the
        // grain that comes back judges them again, with the pressure it had, and the score still holds.
        for (var minute = 8; minute >= 1; minute--)
        {
            fixture.Commit(patient, new VitalReading(VitalKind.OxygenSaturation, now - (minute * 60_000), 93));
        }

        await fixture.DeactivateIdleGrainsAsync();
        await fixture.CommitAndApplyAsync(patient, new VitalReading(VitalKind.OxygenSaturation, now, 93));

        Assert.Equal("news2-medium", Assert.Single(await fixture.Patient(patient).GetOpenAlertsAsync()).RuleId);
        Assert.Equal([AlertEventType.Raised], Publisher.Of(patient).Select(e => e.Type));
    }

    [Fact]
    public async Task Events_handed_on_are_not_handed_on_again_by_the_next_activation()
    {
        var patient = "p-alert-handed-on";
        var now = await WatchedWithANormalHeartRateAsync(patient);
        await fixture.CommitAndApplyAsync(patient, new VitalReading(VitalKind.HeartRate, now + 1, 150));
        await fixture.CommitAndApplyAsync(patient, new VitalReading(VitalKind.HeartRate, now + 2, 85));
        var handedOn = Publisher.Of(patient);
        Assert.Equal([AlertEventType.Raised, AlertEventType.Cleared], handedOn.Select(e => e.Type));

        // The grain goes idle and comes back, as it does after a quiet spell or a restart: a subscriber to the
        // patient's alerts hears nothing it heard before.
        for (var i = 0; i < 2; i++)
        {
            await fixture.DeactivateIdleGrainsAsync();
            await fixture.CommitAndApplyAsync(patient, new VitalReading(VitalKind.HeartRate, now + 3 + i, 84));
            Assert.Equal(handedOn, Publisher.Of(patient));
        }

        // What is raised after it is handed on once, as before.
        await fixture.CommitAndApplyAsync(patient, new VitalReading(VitalKind.HeartRate, now + 10, 160));
        Assert.Equal([AlertEventType.Raised, AlertEventType.Cleared, AlertEventType.Raised], Publisher.Of(patient).Select(e => e.Type));
    }

    /// <summary>Sets the heart rules for the patient and hands its grain a normal heart rate; returns that reading's time.</summary>
    private async Task<long> WatchedWithANormalHeartRateAsync(string patientId)
    {
        await fixture.Patient(patientId).SetAlertRulesAsync(HeartRules);
        var now = Now;
        await fixture.CommitAndApplyAsync(patientId, new VitalReading(VitalKind.HeartRate, now, 80));
        return now;
    }

    [Fact]
    public async Task Acknowledging_stops_escalation_and_is_kept_in_the_history()
    {
        var patient = "p-alert-ack";
        await fixture.Patient(patient).SetAlertRulesAsync(HeartRules);
        await fixture.CommitAndApplyAsync(patient, new VitalReading(VitalKind.HeartRate, Now, 150));
        var alertId = Assert.Single(await fixture.Patient(patient).GetOpenAlertsAsync()).AlertId;

        var acknowledged = await fixture.Patient(patient).AcknowledgeAsync(alertId, "nurse-1");

        Assert.Equal(AlertStatus.Acknowledged, acknowledged?.Status);
        Assert.Null(acknowledged?.EscalatesAt);
        Assert.Null(await fixture.Patient(patient).AcknowledgeAsync(patient + "~99", "nurse-1"));
        Assert.Equal(AlertStatus.Acknowledged, (await Store.GetAsync(alertId))?.Status);
        Assert.Equal([AlertEventType.Raised, AlertEventType.Acknowledged], Publisher.Of(patient).Select(e => e.Type));
    }

    [Fact]
    public async Task Implausible_readings_of_a_batch_raise_a_technical_alert_only()
    {
        var patient = "p-alert-implausible";
        await fixture.Patient(patient).SetAlertRulesAsync(HeartRules);

        var commitId = fixture.Commit(patient, new VitalReading(VitalKind.HeartRate, Now, 70));
        await fixture.Patient(patient).ApplyAsync(new PatientReadings(commitId, [new VitalReading(VitalKind.HeartRate, Now, 70)], [new VitalReading(VitalKind.HeartRate, Now, 400)]));

        var open = Assert.Single(await fixture.Patient(patient).GetOpenAlertsAsync());
        Assert.Equal("implausible", open.RuleId);
        Assert.Equal(AlertCategory.Technical, open.Category);
    }

    [Fact]
    public async Task Readings_past_the_plausible_range_carry_a_sustain_on_only_after_the_plausible_readings_stamped_before_them()
    {
        var rules = new AlertRuleSet([new AlertRule("spo2-low", AlertRuleType.Threshold, AlertPriority.High, VitalKind.OxygenSaturation, AlertDirection.Below, 90, 92, SustainSeconds: 60)]);
        async Task ApplyAsync(string patient, VitalReading[] plausible, VitalReading[] implausible) =>
            await fixture.Patient(patient).ApplyAsync(new PatientReadings(fixture.Commit(patient, plausible), plausible, implausible));
        static VitalReading SpO2(long atMs, double value) => new(VitalKind.OxygenSaturation, atMs, value);

        // 88, then a batch whose 95 ended the sustain before its 45 (a probe slipping) came: no alert.
        var recovered = "p-alert-beyond-recovered";
        await fixture.Patient(recovered).SetAlertRulesAsync(rules);
        await ApplyAsync(recovered, [SpO2(Now - 120_000, 88)], []);
        await ApplyAsync(recovered, [SpO2(Now - 70_000, 95)], [SpO2(Now - 55_000, 45)]);
        Assert.Empty(await fixture.Patient(recovered).GetOpenAlertsAsync());

        // 88, then only readings under 50 for the rest of the sustain: raised.
        var worsening = "p-alert-beyond-worsening";
        await fixture.Patient(worsening).SetAlertRulesAsync(rules);
        await ApplyAsync(worsening, [SpO2(Now - 120_000, 88)], []);
        await ApplyAsync(worsening, [SpO2(Now - 110_000, 87)], [SpO2(Now - 55_000, 44), SpO2(Now - 90_000, 46)]);
        var raised = Assert.Single(await fixture.Patient(worsening).GetOpenAlertsAsync());
        Assert.Equal(("spo2-low", 44d), (raised.RuleId, raised.Value));
    }

    [Fact]
    public async Task A_batch_still_holding_an_implausible_reading_keeps_the_technical_alert_open()
    {
        var patient = "p-alert-implausible-still";
        var clock = fixture.SiloServices.GetRequiredService<ShiftableClock>();
        await fixture.Patient(patient).SetAlertRulesAsync(new AlertRuleSet([new AlertRule("implausible", AlertRuleType.Implausible, AlertPriority.Low, RearmSeconds: 300)]));
        var commitId = fixture.Commit(patient, new VitalReading(VitalKind.HeartRate, Now, 70));
        await fixture.Patient(patient).ApplyAsync(new PatientReadings(commitId, [new VitalReading(VitalKind.HeartRate, Now, 70)], [new VitalReading(VitalKind.HeartRate, Now, 400)]));
        var open = Assert.Single(await fixture.Patient(patient).GetOpenAlertsAsync());

        // Two minutes on (past the quiet minute), a batch with a plausible reading and an implausible one after it.
        clock.Offset = TimeSpan.FromMinutes(2);
        try
        {
            var later = Now + 120_000;
            commitId = fixture.Commit(patient, new VitalReading(VitalKind.HeartRate, later, 80));
            await fixture.Patient(patient).ApplyAsync(new PatientReadings(commitId, [new VitalReading(VitalKind.HeartRate, later, 80)], [new VitalReading(VitalKind.HeartRate, later + 1, 350)]));
        }
        finally
        {
            clock.Offset = TimeSpan.Zero;
        }

        Assert.Equal(open.AlertId, Assert.Single(await fixture.Patient(patient).GetOpenAlertsAsync()).AlertId);
    }

    [Fact]
    public async Task A_silent_device_raises_a_no_data_alert_with_no_traffic_at_all()
    {
        var patient = "p-alert-silent";
        await fixture.Patient(patient).SetAlertRulesAsync(new AlertRuleSet([new AlertRule("no-data", AlertRuleType.NoData, AlertPriority.Medium, SilenceSeconds: 5)]));
        await fixture.CommitAndApplyAsync(patient, new VitalReading(VitalKind.HeartRate, Now, 70));

        // Nothing more is sent: only the grain's timer can raise it.
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (Publisher.Of(patient).Count == 0 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(200);
        }

        var raised = Assert.Single(Publisher.Of(patient));
        Assert.Equal("no-data", raised.Alert.RuleId);
        Assert.Equal(AlertCategory.Technical, raised.Alert.Category);

        await fixture.CommitAndApplyAsync(patient, new VitalReading(VitalKind.HeartRate, Now, 71));
        Assert.Equal([AlertEventType.Raised, AlertEventType.Cleared], Publisher.Of(patient).Select(e => e.Type));
    }

    [Fact]
    public async Task Monitoring_that_never_began_raises_a_no_data_alert_counted_from_when_the_rules_were_set()
    {
        var patient = "p-alert-never-began";
        var before = DateTimeOffset.UtcNow;
        await fixture.Patient(patient).SetAlertRulesAsync(new AlertRuleSet([new AlertRule("no-data", AlertRuleType.NoData, AlertPriority.Medium, SilenceSeconds: 8)]));
        var after = DateTimeOffset.UtcNow;

        // No device ever sends; the grain goes meanwhile (idle, or started over) and comes back on the same server: the
        // silence is still counted from when the rules were set, not from its return.
        await Task.Delay(4_000);
        await fixture.DeactivateIdleGrainsAsync();
        var grainId = fixture.Patient(patient).GetGrainId();
        Assert.DoesNotContain(grainId, await fixture.Cluster.GrainFactory.GetGrain<IManagementGrain>(0).GetActiveGrains(grainId.Type));
        Assert.Empty(await fixture.Patient(patient).GetOpenAlertsAsync());

        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (Publisher.Of(patient).Count == 0 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(200);
        }

        var raised = Assert.Single(Publisher.Of(patient));
        Assert.Equal(("no-data", AlertEventType.Raised), (raised.Alert.RuleId, raised.Type));
        Assert.Equal("No readings since monitoring started; check the devices and their connection", raised.Alert.Message);
        Assert.InRange(raised.Alert.TriggeredAt, before.AddMilliseconds(-50), after.AddMilliseconds(50));
        Assert.InRange(raised.Alert.RaisedAt, before.AddSeconds(8), before.AddSeconds(11.5));
    }

    [Fact]
    public async Task Raising_a_rules_priority_raises_its_open_alerts_and_says_so_to_subscribers_and_the_history()
    {
        var patient = "p-alert-reprioritise";
        var medium = new AlertRuleSet([HeartRules.Rules[0] with { Priority = AlertPriority.Medium, EscalateAfterSeconds = null }]);
        await fixture.Patient(patient).SetAlertRulesAsync(medium);
        await fixture.CommitAndApplyAsync(patient, new VitalReading(VitalKind.HeartRate, Now, 150));

        var before = DateTimeOffset.UtcNow;
        await fixture.Patient(patient).SetAlertRulesAsync(HeartRules);
        var after = DateTimeOffset.UtcNow;

        // It did not escalate before: it escalates the rule's ten minutes after the edit.
        var open = Assert.Single(await fixture.Patient(patient).GetOpenAlertsAsync());
        Assert.Equal((AlertPriority.High, AlertStatus.Active), (open.Priority, open.Status));
        Assert.InRange(open.EscalatesAt!.Value, before.AddSeconds(600), after.AddSeconds(600));
        Assert.Equal(open, await Store.GetAsync(open.AlertId));
        Assert.Equal([AlertEventType.Raised, AlertEventType.Updated], Publisher.Of(patient).Select(e => e.Type));
        Assert.Equal(AlertPriority.High, Publisher.Of(patient).Last().Alert.Priority);
    }

    [Fact]
    public async Task Removing_every_rule_clears_open_alerts_and_stops_watching_the_patient()
    {
        var patient = "p-alert-remove";
        await fixture.Patient(patient).SetAlertRulesAsync(HeartRules);
        await fixture.CommitAndApplyAsync(patient, new VitalReading(VitalKind.HeartRate, Now, 150));

        await fixture.Patient(patient).SetAlertRulesAsync(AlertRuleSet.Empty);

        Assert.Empty(await fixture.Patient(patient).GetOpenAlertsAsync());
        Assert.Empty(await fixture.Patient(patient).GetAlertRulesAsync() is { Rules: var rules } ? rules : []);
        Assert.DoesNotContain(patient, await Store.WatchedPatientsAsync());
        Assert.Equal([AlertEventType.Raised, AlertEventType.Cleared], Publisher.Of(patient).Select(e => e.Type));
    }
}
