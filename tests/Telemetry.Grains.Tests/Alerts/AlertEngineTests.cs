using Microsoft.Extensions.Time.Testing;
using Telemetry.Core.Alerts;
using Telemetry.Core.Readings;
using Telemetry.Core.Vitals;
using Telemetry.Grains.Alerts;

namespace Telemetry.Grains.Tests.Alerts;

/// <summary>The rule engine on a fake clock: readings arrive as a device would send them, and the clock moves only when a test moves it.</summary>
public sealed class AlertEngineTests
{
    /// <summary>SpO2 at or under 90 % for a minute raises; over 92 % for a minute clears.</summary>
    private static readonly AlertRule SpO2Low = new("spo2-low", AlertRuleType.Threshold, AlertPriority.High, VitalKind.OxygenSaturation, AlertDirection.Below, 90, 92, SustainSeconds: 60);

    private readonly FakeTimeProvider _clock = new(new DateTimeOffset(2026, 11, 25, 8, 0, 0, TimeSpan.Zero));

    private long Now => _clock.GetUtcNow().ToUnixTimeMilliseconds();

    [Fact]
    public void A_sustained_threshold_fires_only_once_the_condition_has_held_long_enough()
    {
        var engine = Engine(new AlertRule("hr-high", AlertRuleType.Threshold, AlertPriority.Medium, VitalKind.HeartRate, AlertDirection.Above, 120, 110, SustainSeconds: 60));

        // A stream under way (its first reading would come alone, and the clock could complete its sustain).
        Send(engine, VitalKind.HeartRate, 80);
        Advance(5);
        Send(engine, VitalKind.HeartRate, 125);
        Advance(30);
        Send(engine, VitalKind.HeartRate, 130);
        Assert.Empty(engine.State.Outbox);

        Advance(30);
        Send(engine, VitalKind.HeartRate, 128);

        var raised = Assert.Single(engine.State.Outbox);
        Assert.Equal(AlertEventType.Raised, raised.Type);
        Assert.Equal("hr-high", raised.Alert.RuleId);
        Assert.Equal(AlertStatus.Active, raised.Alert.Status);
        Assert.Equal(AlertCategory.Clinical, raised.Alert.Category);
        Assert.Equal(128, raised.Alert.Value);
        Assert.Equal("Heart rate 128 /min is at or above 120 /min", raised.Alert.Message);
    }

    [Fact]
    public void A_condition_that_breaks_before_its_sustain_time_starts_again()
    {
        var engine = Engine(new AlertRule("hr-high", AlertRuleType.Threshold, AlertPriority.Medium, VitalKind.HeartRate, AlertDirection.Above, 120, 110, SustainSeconds: 60));

        Send(engine, VitalKind.HeartRate, 125);
        Advance(50);
        Send(engine, VitalKind.HeartRate, 100);
        Advance(20);
        Send(engine, VitalKind.HeartRate, 125);
        Advance(50);
        Send(engine, VitalKind.HeartRate, 125);

        Assert.Empty(engine.State.Outbox);
    }

    [Fact]
    public void A_sustain_is_given_up_only_past_the_clear_level_so_a_value_swinging_about_the_level_still_raises()
    {
        var engine = Engine(SpO2Low);

        // 89, 91, 89, 91, 89: never back over 92, at or under 90 from the first reading to the last.
        foreach (var value in new[] { 89, 91, 89, 91 })
        {
            Send(engine, VitalKind.OxygenSaturation, value);
            Assert.Empty(engine.State.Outbox);
            Advance(15);
        }

        Send(engine, VitalKind.OxygenSaturation, 89);

        var raised = Assert.Single(engine.State.Outbox);
        Assert.Equal(AlertEventType.Raised, raised.Type);
        Assert.Equal(DateTimeOffset.FromUnixTimeMilliseconds(Now), raised.Alert.TriggeredAt);
    }

    [Fact]
    public void A_value_sitting_between_the_levels_longer_than_the_sustain_gives_the_sustain_up()
    {
        var engine = Engine(SpO2Low);

        // One 90, then 91 for two minutes: the 90 is long past when the next one comes, which starts a sustain of its own.
        Send(engine, VitalKind.OxygenSaturation, 90);
        for (var i = 0; i < 8; i++)
        {
            Advance(15);
            Send(engine, VitalKind.OxygenSaturation, 91);
        }

        Advance(15);
        Send(engine, VitalKind.OxygenSaturation, 90);
        Assert.Empty(engine.State.Outbox);

        // Held from there for the sustain, it raises.
        Advance(60);
        Send(engine, VitalKind.OxygenSaturation, 90);
        Assert.Equal(AlertEventType.Raised, Assert.Single(engine.State.Outbox).Type);
    }

    [Fact]
    public void A_vital_sent_about_as_rarely_as_the_sustain_swinging_about_the_level_still_raises()
    {
        // A CGM every five minutes (and a second), a five-minute sustain: 69, 71, 69 is one sustain.
        var engine = Engine(new AlertRule("glucose-low", AlertRuleType.Threshold, AlertPriority.Medium, VitalKind.BloodGlucose, AlertDirection.Below, 70, 80, SustainSeconds: 300));

        Send(engine, VitalKind.BloodGlucose, 69);
        Advance(301);
        Send(engine, VitalKind.BloodGlucose, 71);
        Advance(301);
        Send(engine, VitalKind.BloodGlucose, 69);

        Assert.Equal(AlertEventType.Raised, Assert.Single(engine.State.Outbox).Type);
    }

    [Fact]
    public void A_spell_between_the_levels_is_measured_from_the_last_reading_past_the_level_across_activations()
    {
        var engine = Engine(SpO2Low);
        Send(engine, VitalKind.OxygenSaturation, 89);
        Advance(50);
        Send(engine, VitalKind.OxygenSaturation, 89);
        engine.RecordJudged();

        // The next activation: a 91 fifteen seconds after the last 89 keeps the sustain, which the next 89 completes.
        var next = new AlertEngine("p-1", engine.State);
        next.ForgetStaleSustains(Now);
        Advance(15);
        Send(next, VitalKind.OxygenSaturation, 91);
        Advance(5);
        Send(next, VitalKind.OxygenSaturation, 89);

        Assert.Equal(AlertEventType.Raised, Assert.Single(next.State.Outbox).Type);
    }

    [Fact]
    public void One_reading_past_the_clear_level_does_not_end_an_episode_and_a_recovery_held_for_the_sustain_does()
    {
        var engine = Engine(new AlertRule("spo2-low", AlertRuleType.Threshold, AlertPriority.High, VitalKind.OxygenSaturation, AlertDirection.Below, 90, 92, SustainSeconds: 60, RearmSeconds: 300));
        RaiseSpO2Episode(engine);

        // An artefact (93 in a run of 88) clears nothing: cleared, the re-arm would hold back the episode for five minutes.
        Send(engine, VitalKind.OxygenSaturation, 93);
        Advance(15);
        Send(engine, VitalKind.OxygenSaturation, 88);
        Advance(60);
        Send(engine, VitalKind.OxygenSaturation, 88);
        Assert.Equal(AlertStatus.Active, Assert.Single(engine.State.Open).Status);

        // A recovery starts over at a reading between the levels, and clears once it has held a minute.
        Send(engine, VitalKind.OxygenSaturation, 93);
        Advance(30);
        Send(engine, VitalKind.OxygenSaturation, 91);
        Advance(30);
        Send(engine, VitalKind.OxygenSaturation, 94);
        Advance(30);
        Send(engine, VitalKind.OxygenSaturation, 95);
        Assert.DoesNotContain(engine.State.Outbox, item => item.Type == AlertEventType.Cleared);
        Advance(30);
        Send(engine, VitalKind.OxygenSaturation, 95);

        var cleared = Assert.Single(engine.State.Outbox, item => item.Type == AlertEventType.Cleared);
        Assert.Equal(DateTimeOffset.FromUnixTimeMilliseconds(Now), cleared.Alert.ClearedAt);
        Assert.Null(cleared.Alert.ClearReason);
        Assert.Empty(engine.State.Open);
    }

    [Fact]
    public void A_recovery_under_way_is_carried_across_an_activation_and_forgotten_over_a_gap()
    {
        var engine = Engine(SpO2Low);
        RaiseSpO2Episode(engine);
        Send(engine, VitalKind.OxygenSaturation, 94);
        engine.RecordJudged();

        // The next activation carries the recovery on: a minute after its first reading, it clears.
        var next = new AlertEngine("p-1", engine.State);
        next.ForgetStaleSustains(Now);
        Advance(60);
        Send(next, VitalKind.OxygenSaturation, 95);
        Assert.Single(next.State.Outbox, item => item.Type == AlertEventType.Cleared);

        // After a gap longer than what is news, the readings between are unknown: the recovery starts again.
        var other = Engine(SpO2Low);
        RaiseSpO2Episode(other);
        Send(other, VitalKind.OxygenSaturation, 94);
        other.RecordJudged();
        Advance((int)(AlertEngine.StaleAfterMs / 1000) + 60);
        var afterGap = new AlertEngine("p-1", other.State);
        afterGap.ForgetStaleSustains(Now);
        Send(afterGap, VitalKind.OxygenSaturation, 95);
        Assert.DoesNotContain(afterGap.State.Outbox, item => item.Type == AlertEventType.Cleared);
        Advance(60);
        Send(afterGap, VitalKind.OxygenSaturation, 95);
        Assert.Single(afterGap.State.Outbox, item => item.Type == AlertEventType.Cleared);
    }

    [Fact]
    public void A_recovery_carried_into_an_activation_starts_again_across_a_gap_after_it()
    {
        var engine = Engine(SpO2Low);
        RaiseSpO2Episode(engine);
        Send(engine, VitalKind.OxygenSaturation, 94);
        engine.RecordJudged();

        // An activation four minutes on carries the recovery on; then the sensor is off the finger for sixteen minutes.
        // The gap is counted from the last reading judged before the activation, so the next good reading starts the
        // recovery again rather than completing it across the gap.
        Advance(4 * 60);
        var next = new AlertEngine("p-1", engine.State);
        next.ForgetStaleSustains(Now);
        Advance(16 * 60);
        Send(next, VitalKind.OxygenSaturation, 95);
        Assert.DoesNotContain(next.State.Outbox, item => item.Type == AlertEventType.Cleared);

        Advance(60);
        Send(next, VitalKind.OxygenSaturation, 95);
        Assert.Single(next.State.Outbox, item => item.Type == AlertEventType.Cleared);
    }

    [Fact]
    public void A_rule_made_to_watch_another_vital_clears_its_open_alert_saying_so_not_as_a_recovery()
    {
        var heart = new AlertRule("r1", AlertRuleType.Threshold, AlertPriority.High, VitalKind.HeartRate, AlertDirection.Above, 120);
        var engine = Engine(heart);
        Send(engine, VitalKind.HeartRate, 135);
        Assert.Single(engine.State.Open);

        // Raised again, it keeps its alert (new levels are judged from the next reading).
        engine.SetRules(new AlertRuleSet([heart with { Level = 125 }]), Now);
        Assert.Single(engine.State.Open);

        // Made to watch SpO2 under the same id: the heart-rate alert is cleared as the edit's, not by a good SpO2 after it.
        engine.SetRules(new AlertRuleSet([heart with { Kind = VitalKind.OxygenSaturation, Direction = AlertDirection.Below, Level = 90 }]), Now);
        var cleared = Assert.Single(engine.State.Outbox, item => item.Type == AlertEventType.Cleared).Alert;
        Assert.Equal(AlertEngine.RuleChanged, cleared.ClearReason);
        Assert.Empty(engine.State.Open);

        // The new condition raises an alert of its own at once (no re-arm left by the old one).
        Send(engine, VitalKind.OxygenSaturation, 88);
        Assert.Equal(VitalKind.OxygenSaturation, Assert.Single(engine.State.Open).Kind);
    }

    [Fact]
    public void A_reading_judged_again_at_an_activation_counts_as_seen_at_its_own_time_for_a_silence()
    {
        var silent = new AlertRule("hr-silent", AlertRuleType.NoData, AlertPriority.Medium, VitalKind.HeartRate, SilenceSeconds: 900);
        var arrived = Now - 600_000;

        // Judged again ten minutes after it came (the grain activated then): the silence runs from the reading, so the
        // alert is due in five minutes, not fifteen.
        var again = Engine(silent);
        again.Observe(new VitalReading(VitalKind.HeartRate, arrived, 70), Now, seenAtMs: arrived);
        Assert.Equal(arrived + 900_000, again.NextDueMs);

        // A reading arriving now is seen now.
        var live = Engine(silent);
        live.Observe(new VitalReading(VitalKind.HeartRate, arrived, 70), Now);
        Assert.Equal(Now + 900_000, live.NextDueMs);
    }

    [Fact]
    public void A_spot_check_past_the_level_raises_once_its_sustain_has_passed_with_no_reading_after_it()
    {
        var engine = Engine(SpO2Low);
        var checkedAt = Now;

        // A pulse oximeter clipped on for one reading: nothing follows to confirm the minute's sustain, so the clock does,
        // once the minute, and then a minute for a next reading to come, have passed.
        Send(engine, VitalKind.OxygenSaturation, 84);
        Assert.Empty(engine.State.Outbox);
        Assert.Equal(checkedAt + 120_001, engine.NextDueMs);
        Advance(120);
        engine.Tick(Now);
        Assert.Empty(engine.State.Outbox);

        AdvanceMs(1);
        engine.Tick(Now);
        var raised = Assert.Single(engine.State.Outbox);
        Assert.Equal((AlertEventType.Raised, "spo2-low", 84d), (raised.Type, raised.Alert.RuleId, raised.Alert.Value));
        Assert.Equal(DateTimeOffset.FromUnixTimeMilliseconds(checkedAt + 60_000), raised.Alert.TriggeredAt);
        Assert.Equal(DateTimeOffset.FromUnixTimeMilliseconds(Now), raised.Alert.RaisedAt);
        Assert.Null(engine.NextDueMs);
    }

    [Fact]
    public void A_spot_check_under_way_when_its_rule_is_edited_is_judged_by_the_new_rule_and_still_raises_by_the_clock()
    {
        var engine = Engine(SpO2Low);
        Send(engine, VitalKind.OxygenSaturation, 84);

        // A minute into its sustain the rule's level is raised: the check, with no reading after it, is judged again by
        // the new level, its sustain started again from the edit, and raises by the clock.
        Advance(60);
        engine.SetRules(new AlertRuleSet([SpO2Low with { Level = 92, ClearLevel = 94 }]), Now);
        Advance(60);
        engine.Tick(Now);
        Assert.Empty(engine.State.Outbox);
        Advance(120);
        engine.Tick(Now);
        var raised = Assert.Single(engine.State.Outbox);
        Assert.Equal((AlertEventType.Raised, "spo2-low", 84d), (raised.Type, raised.Alert.RuleId, raised.Alert.Value));

        // What five minutes after an edit raise: a check of 84, the readings given after it, then the rule edited.
        List<AlertEvent> AfterEdit(AlertRule edited, params double[] after)
        {
            var checkedOnce = Engine(SpO2Low);
            Send(checkedOnce, VitalKind.OxygenSaturation, 84);
            foreach (var value in after)
            {
                Advance(10);
                Send(checkedOnce, VitalKind.OxygenSaturation, value);
            }

            Advance(20);
            checkedOnce.SetRules(new AlertRuleSet([edited]), Now);
            Advance(300);
            checkedOnce.Tick(Now);
            return checkedOnce.State.Outbox;
        }

        // A reading after the check (89, under 90 but over the new level) is the vital's latest: the edit judges the
        // next reading by the new rule, not the check again. Edited to a level the check does not reach, it raises nothing.
        Assert.Empty(AfterEdit(SpO2Low with { Level = 86, ClearLevel = 92 }, 89));
        Assert.Empty(AfterEdit(SpO2Low with { Level = 80, ClearLevel = 84.5 }));
    }

    [Fact]
    public void Spot_checks_hours_apart_clear_their_alert_and_raise_the_next_episode()
    {
        var engine = Engine(SpO2Low);
        Send(engine, VitalKind.OxygenSaturation, 84);
        Advance(121);
        engine.Tick(Now);
        var first = Assert.Single(engine.State.Open).AlertId;
        engine.State.Outbox.Clear();

        // Four hours on, 91: between the levels, neither better nor worse, so the alert stays open.
        Advance(4 * 3600);
        Send(engine, VitalKind.OxygenSaturation, 91);
        Advance(121);
        engine.Tick(Now);
        Assert.Empty(engine.State.Outbox);

        // Then 97: back past the clear level, alone, so it clears once its minute, and a minute for a next reading, have passed (before, an alert on a vital
        // sent less often than every 15 minutes cleared only under a sustain of 0, and held back every next episode).
        Advance(4 * 3600);
        Send(engine, VitalKind.OxygenSaturation, 97);
        Assert.Empty(engine.State.Outbox);
        Advance(121);
        engine.Tick(Now);
        Assert.Equal(AlertEventType.Cleared, Assert.Single(engine.State.Outbox).Type);
        engine.State.Outbox.Clear();

        Advance(4 * 3600);
        Send(engine, VitalKind.OxygenSaturation, 86);
        Advance(121);
        engine.Tick(Now);
        var second = Assert.Single(engine.State.Outbox);
        Assert.Equal(AlertEventType.Raised, second.Type);
        Assert.NotEqual(first, second.Alert.AlertId);
    }

    [Fact]
    public void A_lone_reading_stands_while_the_readings_after_it_agree_and_falls_to_one_that_does_not()
    {
        // A spot check of a few readings in 20 s, all under the level: the clock completes the minute from the first,
        // and waits a minute more for a next reading.
        var burst = Engine(SpO2Low);
        var checkedAt = Now;
        Send(burst, VitalKind.OxygenSaturation, 84);
        Advance(10);
        Send(burst, VitalKind.OxygenSaturation, 85);
        Advance(10);
        Send(burst, VitalKind.OxygenSaturation, 84);
        Assert.Equal(checkedAt + 120_001, burst.NextDueMs);
        Advance(101);
        burst.Tick(Now);
        var raised = Assert.Single(burst.State.Outbox);
        Assert.Equal((AlertEventType.Raised, 84d), (raised.Type, raised.Alert.Value));
        Assert.Equal(DateTimeOffset.FromUnixTimeMilliseconds(checkedAt + 60_000), raised.Alert.TriggeredAt);

        // Broken by a reading back past the clear level: nothing raised.
        var refuted = Engine(SpO2Low);
        Send(refuted, VitalKind.OxygenSaturation, 84);
        Advance(10);
        Send(refuted, VitalKind.OxygenSaturation, 95);
        Assert.Null(refuted.NextDueMs);
        Advance(120);
        refuted.Tick(Now);
        Assert.Empty(refuted.State.Outbox);

        // Broken by one between the levels (91): the sustain goes on as readings confirm it, not by the clock.
        var between = Engine(SpO2Low);
        Send(between, VitalKind.OxygenSaturation, 84);
        Advance(30);
        Send(between, VitalKind.OxygenSaturation, 91);
        Assert.Null(between.NextDueMs);
        Advance(34);
        between.Tick(Now);
        Assert.Empty(between.State.Outbox);
        Advance(1);
        Send(between, VitalKind.OxygenSaturation, 88);
        Assert.Equal(AlertEventType.Raised, Assert.Single(between.State.Outbox).Type);

        // A reading stamped at the very moment the clock would complete it is judged first.
        var tie = Engine(SpO2Low);
        Send(tie, VitalKind.OxygenSaturation, 84);
        Advance(120);
        Send(tie, VitalKind.OxygenSaturation, 96);
        Advance(120);
        tie.Tick(Now);
        Assert.Empty(tie.State.Outbox);
    }

    [Fact]
    public void A_lone_reading_of_a_vital_that_came_every_few_minutes_waits_for_its_next_reading_to_break_it()
    {
        var low = new AlertRule("glucose-low", AlertRuleType.Threshold, AlertPriority.Medium, VitalKind.BloodGlucose, AlertDirection.Below, 70, 80, SustainSeconds: 300);
        var engine = Engine(low);

        // A CGM every five minutes, then twenty minutes of lost signal, then one 68: its next reading, five minutes on,
        // may still say it was a compression low, so the clock waits two of its intervals after the sustain.
        for (var i = 0; i < 3; i++)
        {
            Send(engine, VitalKind.BloodGlucose, 100);
            Advance(300);
        }

        Advance(20 * 60);
        Send(engine, VitalKind.BloodGlucose, 68);
        Assert.Equal(Now + 900_001, engine.NextDueMs);
        Advance(300);
        Send(engine, VitalKind.BloodGlucose, 95);
        Advance(601);
        engine.Tick(Now);
        Assert.Empty(engine.State.Outbox);

        // Not broken (the next reading is lost too): raised fifteen minutes after the 66 came.
        Advance(20 * 60);
        var lowAt = Now;
        Send(engine, VitalKind.BloodGlucose, 66);
        Advance(900);
        engine.Tick(Now);
        Assert.Empty(engine.State.Outbox);
        AdvanceMs(1);
        engine.Tick(Now);
        var raised = Assert.Single(engine.State.Outbox);
        Assert.Equal(DateTimeOffset.FromUnixTimeMilliseconds(lowAt + 300_000), raised.Alert.TriggeredAt);
    }

    [Fact]
    public void A_lone_reading_raises_no_sooner_than_its_rule_is_re_armed()
    {
        var rule = SpO2Low with { RearmSeconds = 3600 };
        var engine = Engine(rule);
        RaiseSpO2Episode(engine);
        Send(engine, VitalKind.OxygenSaturation, 95);
        Advance(60);
        Send(engine, VitalKind.OxygenSaturation, 95);
        Assert.Equal(AlertEventType.Cleared, Assert.Single(engine.State.Outbox).Type);
        var clearedAt = Now;
        engine.State.Outbox.Clear();

        // Twenty minutes on, a spot check of 85: held back until the hour's re-arm ends, then raised.
        Advance(20 * 60);
        Send(engine, VitalKind.OxygenSaturation, 85);
        Assert.Equal(clearedAt + 3_600_001, engine.NextDueMs);
        Advance(40 * 60);
        engine.Tick(Now);
        Assert.Empty(engine.State.Outbox);
        AdvanceMs(1);
        engine.Tick(Now);
        Assert.Equal(AlertEventType.Raised, Assert.Single(engine.State.Outbox).Type);
    }

    [Fact]
    public void A_reading_known_after_a_lone_one_but_too_old_to_judge_breaks_it_unless_it_agrees()
    {
        // A half-hour sustain: the spot check's clock runs past what is news, so a reading after it may come too late to
        // judge (or be read from the store at an activation after a crash lost its call). Under the level it holds the
        // sustain; back past the clear level it breaks it.
        var rule = SpO2Low with { SustainSeconds = 1800 };
        var engine = Engine(rule);
        var checkedAt = Now;
        Send(engine, VitalKind.OxygenSaturation, 84);
        Assert.Equal(checkedAt + 1_860_001, engine.NextDueMs);

        Advance(20 * 60);
        engine.Observe(new VitalReading(VitalKind.OxygenSaturation, checkedAt + 60_000, 85), Now, seenAtMs: checkedAt + 60_000);
        Assert.Equal(checkedAt + 1_860_001, engine.NextDueMs);
        engine.Observe(new VitalReading(VitalKind.OxygenSaturation, checkedAt + 120_000, 96), Now, seenAtMs: checkedAt + 120_000);
        Assert.Null(engine.NextDueMs);
        Advance(20 * 60);
        engine.Tick(Now);
        Assert.Empty(engine.State.Outbox);
    }

    [Fact]
    public void A_lone_reading_due_before_a_call_brings_the_next_completes_first()
    {
        // The grain's timer waits behind its calls: a call that brings a good reading after the due time finds the spot
        // check raised first, as it would have been on time, then starts its recovery.
        var engine = Engine(SpO2Low);
        Send(engine, VitalKind.OxygenSaturation, 84);
        Advance(150);
        engine.Observe(new VitalReading(VitalKind.OxygenSaturation, Now, 96), Now);
        Assert.Equal(AlertEventType.Raised, Assert.Single(engine.State.Outbox).Type);

        // But a reading stamped before the due time, come a little after it (a device's next, on its way), is judged
        // first: good, it breaks the check, and nothing is raised.
        var onItsWay = Engine(SpO2Low);
        var checkedAt = Now;
        Send(onItsWay, VitalKind.OxygenSaturation, 84);
        Advance(130);
        onItsWay.Observe(new VitalReading(VitalKind.OxygenSaturation, checkedAt + 100_000, 96), Now);
        Assert.Empty(onItsWay.State.Outbox);
        Assert.Null(onItsWay.NextDueMs);
    }

    [Fact]
    public void A_spot_check_judged_again_from_the_store_counts_its_clock_from_the_call_that_brought_it()
    {
        // The check's commit woke the grain four minutes after it was measured (a phone's sync): the activation judges it
        // from the store, then the call brings it again. Its clock waits a minute from that arrival, not twice the
        // delay, and the repeat of a reading after it (a burst's) does not break it.
        var engine = Engine(SpO2Low);
        var measuredAt = Now - 240_000;
        engine.ResumeJudging(Now);
        engine.Observe(new VitalReading(VitalKind.OxygenSaturation, measuredAt, 84), Now, seenAtMs: measuredAt);
        engine.Observe(new VitalReading(VitalKind.OxygenSaturation, measuredAt + 10_000, 85), Now, seenAtMs: measuredAt + 10_000);
        engine.EndOfReadings(Now);
        engine.Observe(new VitalReading(VitalKind.OxygenSaturation, measuredAt, 84), Now);
        engine.Observe(new VitalReading(VitalKind.OxygenSaturation, measuredAt + 10_000, 85), Now);
        engine.EndOfReadings(Now);
        Assert.Equal(Now + 60_001, engine.NextDueMs);

        // Another device's reading from between them, late: good, it breaks the check as it would have in its turn.
        engine.Observe(new VitalReading(VitalKind.OxygenSaturation, measuredAt + 5_000, 97), Now);
        Assert.Null(engine.NextDueMs);
    }

    [Fact]
    public void A_late_reading_from_a_spot_checks_silence_that_agrees_with_it_holds_it()
    {
        // Another device's 84 from five minutes before the check comes after it: the condition held longer, not less.
        var engine = Engine(SpO2Low);
        Send(engine, VitalKind.OxygenSaturation, 84);
        var due = engine.NextDueMs;
        engine.Observe(new VitalReading(VitalKind.OxygenSaturation, Now - 300_000, 84), Now);
        Assert.Equal(due, engine.NextDueMs);

        // One that does not agree breaks it.
        engine.Observe(new VitalReading(VitalKind.OxygenSaturation, Now - 200_000, 95), Now);
        Assert.Null(engine.NextDueMs);
    }

    [Fact]
    public void A_lone_reading_begun_or_broken_asks_for_the_state_to_be_written()
    {
        var engine = Engine(SpO2Low);
        Send(engine, VitalKind.OxygenSaturation, 97);
        Assert.False(engine.AloneChangedSinceRecorded);

        Advance(20 * 60);
        Send(engine, VitalKind.OxygenSaturation, 84);
        Assert.True(engine.AloneChangedSinceRecorded);
        engine.RecordJudged();
        Assert.False(engine.AloneChangedSinceRecorded);

        // Broken: written again, or an activation from the state as it stands would raise it by the clock.
        Advance(10);
        Send(engine, VitalKind.OxygenSaturation, 96);
        Assert.True(engine.AloneChangedSinceRecorded);
        engine.RecordJudged();
        Assert.False(engine.AloneChangedSinceRecorded);
        Assert.Null(engine.State.Alone);
    }

    [Fact]
    public void What_came_without_being_judged_counts_for_a_spot_check_only_when_it_is_a_reading_it_could_not_know()
    {
        // An implausible reading (a probe's sentinel as it comes off the finger) neither makes the reading after it less
        // alone nor breaks it.
        var implausible = Engine(SpO2Low);
        RaiseSpO2Episode(implausible);
        Advance(20 * 60);
        implausible.ObserveImplausible(new VitalReading(VitalKind.OxygenSaturation, Now - 1, 0), Now);
        Send(implausible, VitalKind.OxygenSaturation, 95);
        implausible.ObserveImplausible(new VitalReading(VitalKind.OxygenSaturation, Now + 1, 127), Now);
        Advance(181); // its readings came a minute apart: the clock waits the minute's sustain, then two of those
        implausible.Tick(Now);
        Assert.Equal(AlertEventType.Cleared, Assert.Single(implausible.State.Outbox).Type);

        // The same reading given again (an activation judged its commit from the store, then the call brings it): no break.
        var again = Engine(SpO2Low);
        var checkedAt = Now;
        Send(again, VitalKind.OxygenSaturation, 84);
        again.Observe(new VitalReading(VitalKind.OxygenSaturation, checkedAt, 84), Now);
        Assert.NotNull(again.NextDueMs);

        // A reading from the silence before a lone one comes after it (another device's, late): the vital was not
        // silent, and the lone one's clock stops.
        var late = Engine(SpO2Low);
        RaiseSpO2Episode(late);
        Advance(20 * 60);
        Send(late, VitalKind.OxygenSaturation, 95);
        Assert.NotNull(late.NextDueMs);
        late.Observe(new VitalReading(VitalKind.OxygenSaturation, Now - 300_000, 86), Now);
        Assert.Null(late.NextDueMs);
        Advance(61);
        late.Tick(Now);
        Assert.DoesNotContain(late.State.Outbox, item => item.Type == AlertEventType.Cleared);
    }

    [Fact]
    public void A_spot_checks_sustain_is_kept_across_an_activation_and_completed_by_the_clock_once_devices_had_time_to_send()
    {
        var engine = Engine(SpO2Low);
        var checkedAt = Now;
        Send(engine, VitalKind.OxygenSaturation, 84);
        engine.RecordJudged();
        Assert.Equal(84, engine.State.Alone!["spo2-low"].Value);

        // The server stops for twenty minutes: the next activation does not forget the spot check's sustain as stale;
        // since the server has just started, the devices have a minute to send what they held before the clock raises it.
        Advance(20 * 60);
        var next = new AlertEngine("p-1", engine.State);
        next.StartWatching(Now);
        next.ForgetStaleSustains(Now);
        Assert.Equal(Now + 60_001, next.NextDueMs);
        next.Tick(Now);
        Assert.Empty(next.State.Outbox);
        Advance(61);
        next.Tick(Now);
        var raised = Assert.Single(next.State.Outbox);
        Assert.Equal(AlertEventType.Raised, raised.Type);
        Assert.Equal(DateTimeOffset.FromUnixTimeMilliseconds(checkedAt + 60_000), raised.Alert.TriggeredAt);
    }

    [Fact]
    public void A_recovery_across_a_gap_in_the_readings_starts_again()
    {
        var engine = Engine(SpO2Low);
        RaiseSpO2Episode(engine);
        Send(engine, VitalKind.OxygenSaturation, 94);

        // Twenty minutes without a reading judged (the phone offline, its backlog come too late to judge): the next good
        // reading starts the recovery again rather than completing it.
        Advance(20 * 60);
        Send(engine, VitalKind.OxygenSaturation, 95);
        Assert.DoesNotContain(engine.State.Outbox, item => item.Type == AlertEventType.Cleared);

        Advance(60);
        Send(engine, VitalKind.OxygenSaturation, 95);
        Assert.Single(engine.State.Outbox, item => item.Type == AlertEventType.Cleared);
    }

    [Fact]
    public void A_rule_raised_to_high_cuts_its_snoozes_to_an_hour_from_the_edit_for_the_open_alert_and_the_next_episode()
    {
        var low = new AlertRule("hr-high", AlertRuleType.Threshold, AlertPriority.Low, VitalKind.HeartRate, AlertDirection.Above, 120, 110);
        var engine = Engine(low);
        Send(engine, VitalKind.HeartRate, 130);
        engine.Snooze(engine.State.Open.Single().AlertId, Now + 86_400_000, "dr-a", Now);
        Advance(600);

        engine.SetRules(new AlertRuleSet([low with { Priority = AlertPriority.High }]), Now);
        var anHourFromTheEdit = DateTimeOffset.FromUnixTimeMilliseconds(Now) + AlertSnooze.Longest(AlertPriority.High);
        var updated = engine.State.Outbox[^1];
        Assert.Equal((AlertEventType.Updated, AlertPriority.High, AlertStatus.Snoozed), (updated.Type, updated.Alert.Priority, updated.Alert.Status));
        Assert.Equal(anHourFromTheEdit, updated.Alert.SnoozedUntil);

        Advance(60);
        Send(engine, VitalKind.HeartRate, 100);
        Advance(60);
        Send(engine, VitalKind.HeartRate, 135);

        var raised = engine.State.Outbox[^1];
        Assert.Equal((AlertEventType.Raised, AlertStatus.Snoozed), (raised.Type, raised.Alert.Status));
        Assert.Equal(anHourFromTheEdit, raised.Alert.SnoozedUntil);
    }

    [Fact]
    public void A_rule_lowered_in_priority_leaves_its_open_alerts_snooze_as_it_was()
    {
        var medium = new AlertRule("hr-high", AlertRuleType.Threshold, AlertPriority.Medium, VitalKind.HeartRate, AlertDirection.Above, 120, 110);
        var engine = Engine(medium);
        Send(engine, VitalKind.HeartRate, 130);
        var snoozed = engine.Snooze(engine.State.Open.Single().AlertId, Now + (4 * 3_600_000), "dr-a", Now);
        Advance(600);

        engine.SetRules(new AlertRuleSet([medium with { Priority = AlertPriority.Low }]), Now);

        Assert.Equal(snoozed! with { Priority = AlertPriority.Low }, engine.State.Outbox[^1].Alert);
        Assert.Equal(AlertEventType.Updated, engine.State.Outbox[^1].Type);
        Assert.Equal(snoozed.SnoozedUntil!.Value.ToUnixTimeMilliseconds(), engine.State.SnoozedUntilMs!["hr-high"]);
    }

    [Fact]
    public void An_open_alert_takes_its_edited_rules_priority_and_escalation_and_an_edit_that_changes_neither_says_nothing()
    {
        var hrHigh = new AlertRule("hr-high", AlertRuleType.Threshold, AlertPriority.Medium, VitalKind.HeartRate, AlertDirection.Above, 120, 110);
        var engine = Engine(hrHigh);
        Send(engine, VitalKind.HeartRate, 150);
        var raised = engine.State.Open.Single();
        Assert.Null(raised.EscalatesAt);

        // The patient is worse than the rule allowed for: a clinician makes it high, escalating after five minutes.
        Advance(600);
        var high = hrHigh with { Priority = AlertPriority.High, EscalateAfterSeconds = 300 };
        engine.SetRules(new AlertRuleSet([high]), Now);

        var updated = engine.State.Outbox[^1];
        Assert.Equal(AlertEventType.Updated, updated.Type);
        Assert.Equal(raised with { Priority = AlertPriority.High, EscalatesAt = DateTimeOffset.FromUnixTimeMilliseconds(Now + 300_000) }, updated.Alert);
        Assert.Equal(updated.Alert, engine.State.Open.Single());

        // The same rules again, or a new level only: nothing about the open alert changes, and nothing is said.
        engine.SetRules(new AlertRuleSet([high]), Now);
        engine.SetRules(new AlertRuleSet([high with { Level = 125 }]), Now);
        Assert.Equal(2, engine.State.Outbox.Count);

        Advance(300);
        engine.Tick(Now);
        Assert.Equal((AlertEventType.Escalated, 1), (engine.State.Outbox[^1].Type, engine.State.Outbox[^1].Alert.EscalationLevel));

        // The escalation taken off the rule: the alert escalates no more.
        engine.SetRules(new AlertRuleSet([high with { EscalateAfterSeconds = null }]), Now);
        Assert.Equal(AlertEventType.Updated, engine.State.Outbox[^1].Type);
        Assert.Null(engine.State.Open.Single().EscalatesAt);
        Advance(3600);
        engine.Tick(Now);
        Assert.Equal(AlertEventType.Updated, engine.State.Outbox[^1].Type);
    }

    [Fact]
    public void An_edited_escalation_counts_as_the_old_one_did_and_leaves_alerts_that_may_not_escalate_alone()
    {
        var hrHigh = new AlertRule("hr-high", AlertRuleType.Threshold, AlertPriority.High, VitalKind.HeartRate, AlertDirection.Above, 120, 110, EscalateAfterSeconds: 900);
        var engine = Engine(hrHigh);
        Send(engine, VitalKind.HeartRate, 150);

        // Fifteen minutes made five, thirteen minutes into the alert: it is overdue, and escalates at once.
        Advance(800);
        engine.SetRules(new AlertRuleSet([hrHigh with { EscalateAfterSeconds = 300 }]), Now);
        Assert.Equal(DateTimeOffset.FromUnixTimeMilliseconds(Now), engine.State.Open.Single().EscalatesAt);
        engine.Tick(Now);
        Assert.Equal((AlertEventType.Escalated, 1), (engine.State.Outbox[^1].Type, engine.State.Outbox[^1].Alert.EscalationLevel));

        // Made ten minutes a hundred seconds after that escalation: the next comes ten minutes after it, not after the edit.
        var escalatedAt = Now;
        Advance(100);
        engine.SetRules(new AlertRuleSet([hrHigh with { EscalateAfterSeconds = 600 }]), Now);
        Assert.Equal(DateTimeOffset.FromUnixTimeMilliseconds(escalatedAt + 600_000), engine.State.Open.Single().EscalatesAt);

        // Escalated as often as it may, an edit gives it no further escalation.
        Advance(500);
        engine.Tick(Now);
        Advance(600);
        engine.Tick(Now);
        Assert.Equal((AlertEventType.Escalated, AlertEngine.MaxEscalations), (engine.State.Outbox[^1].Type, engine.State.Outbox[^1].Alert.EscalationLevel));
        engine.SetRules(new AlertRuleSet([hrHigh with { EscalateAfterSeconds = 60 }]), Now);
        Assert.Equal(AlertEventType.Escalated, engine.State.Outbox[^1].Type);
        Assert.Null(engine.State.Open.Single().EscalatesAt);

        // Acknowledged or snoozed, an alert does not escalate, whatever the rule's escalation becomes.
        foreach (var quieted in new Func<AlertEngine, string, Alert?>[]
        {
            (other, id) => other.Acknowledge(id, "nurse-1", Now),
            (other, id) => other.Snooze(id, Now + 600_000, "nurse-1", Now),
        })
        {
            var other = Engine(hrHigh);
            Send(other, VitalKind.HeartRate, 150);
            var before = quieted(other, other.State.Open.Single().AlertId);
            other.SetRules(new AlertRuleSet([hrHigh with { EscalateAfterSeconds = 60 }]), Now);
            Assert.Equal(before, other.State.Open.Single());
            Assert.NotEqual(AlertEventType.Updated, other.State.Outbox[^1].Type);
        }
    }

    [Fact]
    public void Editing_one_rule_restarts_its_own_sustain_and_leaves_another_rules_running()
    {
        var hrHigh = new AlertRule("hr-high", AlertRuleType.Threshold, AlertPriority.Medium, VitalKind.HeartRate, AlertDirection.Above, 120, 110, SustainSeconds: 60);
        var engine = Engine(SpO2Low, hrHigh);
        Send(engine, VitalKind.OxygenSaturation, 88);
        Send(engine, VitalKind.HeartRate, 130);
        Advance(30);

        // Someone raises the pulse's level half-way through both sustains, and lowers SpO2's priority (its condition the same).
        engine.SetRules(new AlertRuleSet([SpO2Low with { Priority = AlertPriority.Medium }, hrHigh with { Level = 125 }]), Now);
        Advance(30);
        Send(engine, VitalKind.OxygenSaturation, 88);
        Send(engine, VitalKind.HeartRate, 130);

        var raised = Assert.Single(engine.State.Outbox);
        Assert.Equal(("spo2-low", AlertEventType.Raised, AlertPriority.Medium), (raised.Alert.RuleId, raised.Type, raised.Alert.Priority));

        // The edited rule's sustain started again by its new level, and holds a minute from the edit's next reading.
        Advance(60);
        Send(engine, VitalKind.HeartRate, 130);
        Assert.Equal("hr-high", engine.State.Outbox[^1].Alert.RuleId);
    }

    [Fact]
    public void A_recovery_under_way_carries_on_when_another_rule_is_edited()
    {
        var engine = Engine(SpO2Low, new AlertRule("temp-high", AlertRuleType.Threshold, AlertPriority.Medium, VitalKind.BodyTemperature, AlertDirection.Above, 38.5, 38.0));
        RaiseSpO2Episode(engine);
        Send(engine, VitalKind.OxygenSaturation, 94);
        Advance(30);
        engine.SetRules(new AlertRuleSet([SpO2Low, new AlertRule("temp-high", AlertRuleType.Threshold, AlertPriority.Medium, VitalKind.BodyTemperature, AlertDirection.Above, 39.0, 38.0)]), Now);
        engine.RecordJudged();
        Assert.NotNull(engine.State.RecoveringSinceMs);

        Advance(30);
        Send(engine, VitalKind.OxygenSaturation, 95);

        Assert.Single(engine.State.Outbox, item => item.Type == AlertEventType.Cleared);
    }

    [Theory]
    [InlineData(900)]
    [InlineData(null)]
    public void A_rate_window_keeps_its_readings_when_its_rule_is_edited_over_the_same_window(int? windowSeconds)
    {
        // Its window given, or left out (900 s by default) and given as 900 in the edit: the same window.
        var falling = new AlertRule("falling", AlertRuleType.RateOfChange, AlertPriority.Medium, VitalKind.BloodGlucose, AlertDirection.Falling, 2, 1, WindowSeconds: 900);
        var engine = Engine(falling with { WindowSeconds = windowSeconds });
        foreach (var value in new double[] { 140, 141, 139, 140, 125 })
        {
            Send(engine, VitalKind.BloodGlucose, value);
            Advance(300);
        }

        // The clear level edited as glucose falls: the fall the window holds is still seen at the next reading, not
        // after a third of a window of new ones.
        engine.SetRules(new AlertRuleSet([falling with { ClearLevel = 1.5, Priority = AlertPriority.High }]), Now);
        Assert.Empty(engine.State.Outbox);
        Send(engine, VitalKind.BloodGlucose, 110);

        var raised = Assert.Single(engine.State.Outbox);
        Assert.Equal((AlertRuleType.RateOfChange, AlertPriority.High), (raised.Alert.RuleType, raised.Alert.Priority));
    }

    /// <summary>SpO2 at 88 for a minute: the episode is open, and the outbox emptied.</summary>
    private void RaiseSpO2Episode(AlertEngine engine)
    {
        Send(engine, VitalKind.OxygenSaturation, 88);
        Advance(60);
        Send(engine, VitalKind.OxygenSaturation, 88);
        Assert.Equal(AlertEventType.Raised, Assert.Single(engine.State.Outbox).Type);
        engine.State.Outbox.Clear();
        Advance(15);
    }

    [Fact]
    public void A_heart_rate_alternating_around_the_threshold_gives_one_episode()
    {
        var engine = Engine(new AlertRule("hr-high", AlertRuleType.Threshold, AlertPriority.Medium, VitalKind.HeartRate, AlertDirection.Above, 120, 115));

        for (var i = 0; i < 600; i++)
        {
            Send(engine, VitalKind.HeartRate, i % 2 == 0 ? 121 : 119);
            Advance(1);
        }

        var raised = Assert.Single(engine.State.Outbox);
        Assert.Equal(AlertEventType.Raised, raised.Type);

        Send(engine, VitalKind.HeartRate, 114);

        Assert.Equal([AlertEventType.Raised, AlertEventType.Cleared], engine.State.Outbox.Select(e => e.Type));
        Assert.Equal(raised.Alert.AlertId, engine.State.Outbox[1].Alert.AlertId);
        Assert.Empty(engine.State.Open);
    }

    [Fact]
    public void The_rearm_guard_holds_back_a_new_episode_until_it_has_passed()
    {
        var engine = Engine(new AlertRule("spo2-low", AlertRuleType.Threshold, AlertPriority.High, VitalKind.OxygenSaturation, AlertDirection.Below, 90, 92, RearmSeconds: 120));

        Send(engine, VitalKind.OxygenSaturation, 88);
        Advance(10);
        Send(engine, VitalKind.OxygenSaturation, 95);
        Advance(10);
        Send(engine, VitalKind.OxygenSaturation, 87);
        Advance(60);
        Send(engine, VitalKind.OxygenSaturation, 87);
        Assert.Equal([AlertEventType.Raised, AlertEventType.Cleared], engine.State.Outbox.Select(e => e.Type));

        Advance(60);
        Send(engine, VitalKind.OxygenSaturation, 86);

        Assert.Equal([AlertEventType.Raised, AlertEventType.Cleared, AlertEventType.Raised], engine.State.Outbox.Select(e => e.Type));
        Assert.NotEqual(engine.State.Outbox[0].Alert.AlertId, engine.State.Outbox[2].Alert.AlertId);
    }

    [Fact]
    public void Glucose_falling_faster_than_two_a_minute_raises_a_rate_alert()
    {
        var engine = Engine(new AlertRule("falling", AlertRuleType.RateOfChange, AlertPriority.Medium, VitalKind.BloodGlucose, AlertDirection.Falling, 2, 1, WindowSeconds: 900));

        // A CGM every five minutes: steady, then falling 3 mg/dL a minute.
        foreach (var value in new double[] { 140, 141, 139, 140 })
        {
            Send(engine, VitalKind.BloodGlucose, value);
            Advance(300);
        }

        Assert.Empty(engine.State.Outbox);
        foreach (var value in new double[] { 125, 110, 95 })
        {
            Send(engine, VitalKind.BloodGlucose, value);
            Advance(300);
        }

        var raised = Assert.Single(engine.State.Outbox);
        Assert.Equal(AlertRuleType.RateOfChange, raised.Alert.RuleType);
        Assert.InRange(raised.Alert.Value!.Value, 2, 3.01);
        Assert.StartsWith("Blood glucose falling", raised.Alert.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_rate_over_an_hour_of_a_vital_sent_every_second_is_seen()
    {
        // Rising a beat a minute for half an hour: a rate needs a third of the hour covered, 1,200 readings at 1 Hz,
        // more than the window keeps; kept spaced, they span it, and the rate is seen once 20 minutes are covered.
        var engine = Engine(new AlertRule("hr-rising", AlertRuleType.RateOfChange, AlertPriority.Medium, VitalKind.HeartRate, AlertDirection.Rising, 0.5, WindowSeconds: 3600));
        var raisedAt = -1;
        for (var second = 0; second < 1800 && raisedAt < 0; second++)
        {
            Send(engine, VitalKind.HeartRate, 70 + (second / 60.0));
            Advance(1);
            raisedAt = engine.State.Outbox.Count > 0 ? second : -1;
        }

        Assert.InRange(raisedAt, 1200, 1300);
        Assert.Equal(AlertRuleType.RateOfChange, Assert.Single(engine.State.Outbox).Alert.RuleType);
        Assert.InRange(engine.State.Outbox[0].Alert.Value!.Value, 0.99, 1.01);
    }

    [Fact]
    public void Glucose_falling_slowly_raises_nothing()
    {
        var engine = Engine(new AlertRule("falling", AlertRuleType.RateOfChange, AlertPriority.Medium, VitalKind.BloodGlucose, AlertDirection.Falling, 2, WindowSeconds: 900));

        for (var i = 0; i < 12; i++)
        {
            Send(engine, VitalKind.BloodGlucose, 180 - (i * 5));
            Advance(300);
        }

        Assert.Empty(engine.State.Outbox);
    }

    [Fact]
    public void Silence_raises_a_no_data_alert_by_the_clock_alone_and_data_clears_it()
    {
        var engine = Engine(new AlertRule("no-data", AlertRuleType.NoData, AlertPriority.Low, SilenceSeconds: 600));

        Send(engine, VitalKind.HeartRate, 70);
        Assert.Equal(Now + 600_000, engine.NextDueMs);

        // No traffic at all: only the clock moves, and the grain's timer ticks when due.
        Advance(599);
        engine.Tick(Now);
        Assert.Empty(engine.State.Outbox);
        Advance(1);
        engine.Tick(Now);

        var raised = Assert.Single(engine.State.Outbox);
        Assert.Equal(AlertCategory.Technical, raised.Alert.Category);
        Assert.Equal("No readings for 10 min; check the devices and their connection", raised.Alert.Message);
        Assert.Null(engine.NextDueMs);

        Advance(3600);
        engine.Tick(Now);
        Assert.Single(engine.State.Outbox);

        Send(engine, VitalKind.HeartRate, 72);
        Assert.Equal([AlertEventType.Raised, AlertEventType.Cleared], engine.State.Outbox.Select(e => e.Type));
        Assert.Equal(Now + 600_000, engine.NextDueMs);
    }

    [Fact]
    public void An_old_reading_uploaded_late_neither_clears_a_no_data_alert_nor_restarts_the_silence()
    {
        var engine = Engine(new AlertRule("no-data", AlertRuleType.NoData, AlertPriority.Low, SilenceSeconds: 600));
        Send(engine, VitalKind.HeartRate, 70);
        Advance(600);
        engine.Tick(Now);
        Assert.Equal(AlertEventType.Raised, Assert.Single(engine.State.Outbox).Type);

        // Yesterday's steps, uploaded by the phone: not live monitoring coming back.
        engine.Observe(new VitalReading(VitalKind.Steps, Now - 86_400_000, 4_000), Now);
        Assert.Single(engine.State.Outbox);
        Assert.Single(engine.State.Open);

        Send(engine, VitalKind.HeartRate, 72);
        Assert.Equal([AlertEventType.Raised, AlertEventType.Cleared], engine.State.Outbox.Select(e => e.Type));
    }

    [Fact]
    public void Monitoring_that_never_began_raises_a_no_data_alert_a_silence_after_the_rules_were_set()
    {
        var rulesSetAt = Now;
        var engine = Engine(
            new AlertRule("no-data", AlertRuleType.NoData, AlertPriority.Low, SilenceSeconds: 600),
            new AlertRule("cgm-silent", AlertRuleType.NoData, AlertPriority.Medium, VitalKind.BloodGlucose, SilenceSeconds: 1200));
        Assert.Equal(rulesSetAt + 600_000, engine.NextDueMs);

        // The patient sent home with a watch and a CGM, neither ever paired.
        Advance(1200);
        engine.Tick(Now);

        Assert.Equal(
            ["No readings since monitoring started; check the devices and their connection",
             "Blood glucose: no readings since monitoring started; check the device and its connection"],
            engine.State.Outbox.Select(item => item.Alert.Message));
        Assert.All(engine.State.Outbox, item => Assert.Equal(rulesSetAt, item.Alert.TriggeredAt.ToUnixTimeMilliseconds()));

        // The watch paired: the silence of any vital ends, the CGM's goes on.
        Send(engine, VitalKind.HeartRate, 70);
        Assert.Equal(["cgm-silent"], engine.State.Open.Select(alert => alert.RuleId));
    }

    [Fact]
    public void A_restart_gives_a_device_never_seen_a_whole_silence_before_its_no_data_alert()
    {
        var engine = Engine(new AlertRule("no-data", AlertRuleType.NoData, AlertPriority.Low, SilenceSeconds: 600));
        engine.RecordJudged();

        // The server restarts half-way through the silence: the new activation counts it from its start, so no device is
        // taken for silent while the servers came back, nor at once.
        Advance(300);
        var restarted = Reactivated(engine, Now);
        Assert.Equal(Now + 600_000, restarted.NextDueMs);

        Advance(599);
        restarted.Tick(Now);
        Assert.Empty(restarted.State.Outbox);
        Advance(1);
        restarted.Tick(Now);
        Assert.Equal(AlertEventType.Raised, Assert.Single(restarted.State.Outbox).Type);
    }

    [Fact]
    public void A_grain_activated_again_without_a_restart_keeps_counting_from_when_the_rules_were_set()
    {
        var serverStarted = Now - 3_600_000;
        var rulesSetAt = Now;
        var engine = Engine(new AlertRule("no-data", AlertRuleType.NoData, AlertPriority.Low, SilenceSeconds: 600));
        engine.RecordJudged();

        // Gone idle, or started over after a failure: activated again on the same server, the watch is not put back.
        Advance(300);
        var again = Reactivated(engine, serverStarted);

        Assert.Equal(rulesSetAt + 600_000, again.NextDueMs);
    }

    [Fact]
    public void A_grain_activated_again_without_a_restart_counts_a_vitals_silence_from_its_last_reading()
    {
        var seenAt = Now;
        var engine = Engine(new AlertRule("cgm-silent", AlertRuleType.NoData, AlertPriority.Medium, VitalKind.BloodGlucose, SilenceSeconds: 1800));
        Send(engine, VitalKind.BloodGlucose, 110);
        engine.RecordJudged();

        // Started over 25 minutes into the CGM's silence, on a server running for an hour: still due at 30 minutes.
        Advance(25 * 60);
        var again = Reactivated(engine, Now - 3_600_000, (VitalKind.BloodGlucose, seenAt, 110));

        Assert.Equal(seenAt + 1_800_000, again.NextDueMs);
    }

    [Fact]
    public void A_restart_gives_devices_at_most_fifteen_minutes_more_before_a_long_silence_raises()
    {
        var seenAt = Now;
        var engine = Engine(new AlertRule("scale-silent", AlertRuleType.NoData, AlertPriority.Low, VitalKind.BodyWeight, SilenceSeconds: 86_400));
        Send(engine, VitalKind.BodyWeight, 70);
        engine.RecordJudged();

        // A restart 23 hours into a day's silence does not put the alert off by another day; one at 23 h 55 min puts it
        // off by the quarter of an hour a device may need to come back.
        Advance(23 * 3600);
        var restarted = Reactivated(engine, Now, (VitalKind.BodyWeight, seenAt, 70));
        Assert.Equal(seenAt + 86_400_000, restarted.NextDueMs);

        Advance(55 * 60);
        var later = Reactivated(engine, Now, (VitalKind.BodyWeight, seenAt, 70));
        Assert.Equal(Now + 900_000, later.NextDueMs);
    }

    [Fact]
    public void A_rules_edit_and_an_activation_after_it_keep_a_no_data_rules_watch_from_when_it_was_set()
    {
        var rulesSetAt = Now;
        var noData = new AlertRule("no-data", AlertRuleType.NoData, AlertPriority.Low, SilenceSeconds: 600);
        var engine = Engine(noData);

        // Another rule added five minutes on (the rules' time moves), then the grain goes and comes back.
        Advance(300);
        engine.SetRules(new AlertRuleSet([noData, SpO2Low]), Now);
        engine.RecordJudged();
        var again = Reactivated(engine, rulesSetAt - 3_600_000);

        Assert.Equal(rulesSetAt + 600_000, again.NextDueMs);
    }

    [Fact]
    public void A_vital_last_seen_before_a_restart_is_silent_since_then_but_given_a_whole_period_after_it()
    {
        var seenAt = Now;
        var engine = Engine(new AlertRule("no-data", AlertRuleType.NoData, AlertPriority.Low, SilenceSeconds: 600));
        Send(engine, VitalKind.HeartRate, 70);
        engine.RecordJudged();

        // Three days on, the server restarts; the watch's reading is too old to be among those an activation reads again.
        Advance(3 * 86_400);
        var restarted = Reactivated(engine, Now);
        Assert.Equal(Now + 600_000, restarted.NextDueMs);

        Advance(600);
        restarted.Tick(Now);
        var raised = Assert.Single(restarted.State.Outbox);
        Assert.Equal("No readings for 10 min; check the devices and their connection", raised.Alert.Message);
        Assert.Equal(seenAt, raised.Alert.TriggeredAt.ToUnixTimeMilliseconds());
    }

    [Fact]
    public void Editing_other_rules_does_not_restart_the_silence_of_monitoring_that_never_began()
    {
        var noData = new AlertRule("no-data", AlertRuleType.NoData, AlertPriority.Low, SilenceSeconds: 600);
        var engine = Engine(noData);
        var due = engine.NextDueMs;

        Advance(300);
        engine.SetRules(new AlertRuleSet([noData, SpO2Low]), Now);
        Assert.Equal(due, engine.NextDueMs);

        // Its own silence lengthened: the watch began when it did.
        engine.SetRules(new AlertRuleSet([noData with { SilenceSeconds = 900 }, SpO2Low]), Now);
        Assert.Equal(due + 300_000, engine.NextDueMs);
    }

    [Fact]
    public void A_no_data_rule_for_one_vital_watches_only_that_vital()
    {
        var engine = Engine(new AlertRule("cgm-silent", AlertRuleType.NoData, AlertPriority.Medium, VitalKind.BloodGlucose, SilenceSeconds: 1200));

        Send(engine, VitalKind.BloodGlucose, 110);
        for (var i = 0; i < 25; i++)
        {
            Advance(60);
            Send(engine, VitalKind.HeartRate, 70);
        }

        var raised = Assert.Single(engine.State.Outbox);
        Assert.Equal(VitalKind.BloodGlucose, raised.Alert.Kind);
        Assert.Equal("Blood glucose: no readings for 20 min; check the device and its connection", raised.Alert.Message);
    }

    [Theory]
    [InlineData(VitalKind.RespiratoryRate, 8, 3)]
    [InlineData(VitalKind.RespiratoryRate, 9, 1)]
    [InlineData(VitalKind.RespiratoryRate, 11, 1)]
    [InlineData(VitalKind.RespiratoryRate, 12, 0)]
    [InlineData(VitalKind.RespiratoryRate, 20, 0)]
    [InlineData(VitalKind.RespiratoryRate, 21, 2)]
    [InlineData(VitalKind.RespiratoryRate, 24, 2)]
    [InlineData(VitalKind.RespiratoryRate, 25, 3)]
    [InlineData(VitalKind.OxygenSaturation, 91, 3)]
    [InlineData(VitalKind.OxygenSaturation, 92, 2)]
    [InlineData(VitalKind.OxygenSaturation, 93, 2)]
    [InlineData(VitalKind.OxygenSaturation, 94, 1)]
    [InlineData(VitalKind.OxygenSaturation, 95, 1)]
    [InlineData(VitalKind.OxygenSaturation, 96, 0)]
    [InlineData(VitalKind.SystolicPressure, 90, 3)]
    [InlineData(VitalKind.SystolicPressure, 91, 2)]
    [InlineData(VitalKind.SystolicPressure, 100, 2)]
    [InlineData(VitalKind.SystolicPressure, 101, 1)]
    [InlineData(VitalKind.SystolicPressure, 110, 1)]
    [InlineData(VitalKind.SystolicPressure, 111, 0)]
    [InlineData(VitalKind.SystolicPressure, 219, 0)]
    [InlineData(VitalKind.SystolicPressure, 220, 3)]
    [InlineData(VitalKind.HeartRate, 40, 3)]
    [InlineData(VitalKind.HeartRate, 41, 1)]
    [InlineData(VitalKind.HeartRate, 50, 1)]
    [InlineData(VitalKind.HeartRate, 51, 0)]
    [InlineData(VitalKind.HeartRate, 90, 0)]
    [InlineData(VitalKind.HeartRate, 91, 1)]
    [InlineData(VitalKind.HeartRate, 110, 1)]
    [InlineData(VitalKind.HeartRate, 111, 2)]
    [InlineData(VitalKind.HeartRate, 130, 2)]
    [InlineData(VitalKind.HeartRate, 131, 3)]
    [InlineData(VitalKind.BodyTemperature, 35.0, 3)]
    [InlineData(VitalKind.BodyTemperature, 35.1, 1)]
    [InlineData(VitalKind.BodyTemperature, 36.0, 1)]
    [InlineData(VitalKind.BodyTemperature, 36.1, 0)]
    [InlineData(VitalKind.BodyTemperature, 38.0, 0)]
    [InlineData(VitalKind.BodyTemperature, 38.1, 1)]
    [InlineData(VitalKind.BodyTemperature, 39.0, 1)]
    [InlineData(VitalKind.BodyTemperature, 39.1, 2)]
    [InlineData(VitalKind.BloodGlucose, 40, 0)]

    // Between the chart's whole numbers (tenths, for temperature): rounded half away from zero, then banded.
    [InlineData(VitalKind.RespiratoryRate, 8.4, 3)]
    [InlineData(VitalKind.RespiratoryRate, 20.6, 2)]
    [InlineData(VitalKind.RespiratoryRate, 24.6, 3)]
    [InlineData(VitalKind.HeartRate, 40.4, 3)]
    [InlineData(VitalKind.HeartRate, 130.5, 3)]
    [InlineData(VitalKind.OxygenSaturation, 91.6, 2)]
    [InlineData(VitalKind.SystolicPressure, 90.007, 3)]
    [InlineData(VitalKind.SystolicPressure, 219.8, 3)]
    [InlineData(VitalKind.BodyTemperature, 35.04, 3)]
    [InlineData(VitalKind.BodyTemperature, 38.06, 1)]
    public void Early_warning_score_bands_follow_NEWS2(VitalKind kind, double value, int points) =>
        Assert.Equal(points, EarlyWarningScore.Points(kind, value));

    [Fact]
    public void The_early_warning_score_sums_the_vitals_present_and_alerts_on_its_levels()
    {
        var engine = Engine(
            new AlertRule("news2-medium", AlertRuleType.EarlyWarning, AlertPriority.Medium, Direction: AlertDirection.Above, Level: 5),
            new AlertRule("news2-high", AlertRuleType.EarlyWarning, AlertPriority.High, Direction: AlertDirection.Above, Level: 7));

        Send(engine, VitalKind.HeartRate, 115); // 2
        Send(engine, VitalKind.RespiratoryRate, 22); // 2
        Assert.Equal(4, engine.CurrentEarlyWarningScore(Now));
        Assert.Empty(engine.State.Outbox);

        Send(engine, VitalKind.OxygenSaturation, 95); // 1: 5
        Assert.Equal("news2-medium", Assert.Single(engine.State.Outbox).Alert.RuleId);

        Send(engine, VitalKind.BodyTemperature, 39.5); // 2: 7
        Assert.Equal(["news2-medium", "news2-high"], engine.State.Outbox.Select(e => e.Alert.RuleId));
        Assert.Equal("NEWS2 score 7 is at or above 7", engine.State.Outbox[1].Alert.Message);

        Advance(60);
        Send(engine, VitalKind.BodyTemperature, 37); // 0: 5
        Send(engine, VitalKind.HeartRate, 70); // 0: 3
        Assert.Equal(
            [AlertEventType.Raised, AlertEventType.Raised, AlertEventType.Cleared, AlertEventType.Cleared],
            engine.State.Outbox.Select(e => e.Type));
    }

    [Fact]
    public void The_readings_of_one_moment_are_scored_together_not_each_with_the_others_values_from_before()
    {
        var engine = Engine(new AlertRule("news2", AlertRuleType.EarlyWarning, AlertPriority.Medium, Direction: AlertDirection.Above, Level: 5, ClearLevel: 3));
        engine.Observe(new VitalReading(VitalKind.HeartRate, Now, 135), Now); // 3
        engine.Observe(new VitalReading(VitalKind.OxygenSaturation, Now, 97), Now); // 0
        engine.Observe(new VitalReading(VitalKind.RespiratoryRate, Now, 22), Now); // 2: 5
        engine.EndOfReadings(Now);
        Assert.Equal(AlertEventType.Raised, Assert.Single(engine.State.Outbox).Type);

        // The heart rate falls (0) as the SpO2 does (3), at one moment: the score is 5 throughout, judged once both are in.
        Advance(60);
        engine.Observe(new VitalReading(VitalKind.HeartRate, Now, 85), Now);
        engine.Observe(new VitalReading(VitalKind.OxygenSaturation, Now, 91), Now);
        Assert.Single(engine.State.Outbox);
        engine.EndOfReadings(Now);
        Assert.Single(engine.State.Outbox);
        Assert.Single(engine.State.Open);

        // A reading of a later moment judges the one before first: here the SpO2 recovers (0), the score 2 clears.
        Advance(1);
        engine.Observe(new VitalReading(VitalKind.OxygenSaturation, Now, 97), Now);
        Assert.Single(engine.State.Outbox);
        Advance(1);
        engine.Observe(new VitalReading(VitalKind.HeartRate, Now, 85), Now);
        Assert.Equal([AlertEventType.Raised, AlertEventType.Cleared], engine.State.Outbox.Select(e => e.Type));
    }

    [Fact]
    public void A_vital_measured_over_an_hour_before_the_newest_no_longer_counts_towards_the_score()
    {
        var engine = Engine(new AlertRule("news2", AlertRuleType.EarlyWarning, AlertPriority.Medium, Direction: AlertDirection.Above, Level: 5));

        Send(engine, VitalKind.OxygenSaturation, 88); // 3
        Advance(3601);
        Send(engine, VitalKind.HeartRate, 115); // 2, the SpO2 reading is stale

        Assert.Equal(2, engine.CurrentEarlyWarningScore(Now));
        Assert.Empty(engine.State.Outbox);
    }

    [Fact]
    public void An_early_warning_alert_is_not_cleared_by_a_vital_growing_old_only_by_a_better_reading_of_it()
    {
        var engine = Engine(new AlertRule("news2", AlertRuleType.EarlyWarning, AlertPriority.Medium, Direction: AlertDirection.Above, Level: 5, ClearLevel: 3));

        Send(engine, VitalKind.OxygenSaturation, 88); // 3
        Send(engine, VitalKind.HeartRate, 115); // 2: 5
        Assert.Equal(AlertEventType.Raised, Assert.Single(engine.State.Outbox).Type);

        // An hour on, the SpO2 reading no longer counts towards a new score; with no SpO2 since, it is missing, not better.
        Advance(3601);
        Send(engine, VitalKind.HeartRate, 70); // 0
        Assert.Equal(0, engine.CurrentEarlyWarningScore(Now));
        Assert.Single(engine.State.Outbox);
        Assert.Single(engine.State.Open);

        Send(engine, VitalKind.OxygenSaturation, 97); // 0: recovered
        Assert.Equal([AlertEventType.Raised, AlertEventType.Cleared], engine.State.Outbox.Select(e => e.Type));
        Assert.Empty(engine.State.Open);
    }

    [Fact]
    public void The_default_templates_no_data_rule_is_not_kept_quiet_by_a_phones_steps_once_the_monitor_stops()
    {
        Assert.True(AlertRuleTemplates.TryGet(AlertRuleTemplates.AdultDefault, out var template));
        var engine = Engine([.. template.Rules]);
        Send(engine, VitalKind.HeartRate, 72);

        // The watch's battery dies; the phone goes on uploading its own steps every five minutes.
        for (var i = 0; i < 4; i++)
        {
            Advance(300);
            Send(engine, VitalKind.Steps, 40);
        }

        Advance(1);
        engine.Tick(Now);
        var silent = Assert.Single(engine.State.Open);
        Assert.Equal(("no-data", VitalKind.HeartRate), (silent.RuleId, silent.Kind));
    }

    [Fact]
    public void A_patient_worsening_while_the_first_alert_is_acknowledged_raises_the_critical_tier()
    {
        Assert.True(AlertRuleTemplates.TryGet(AlertRuleTemplates.AdultDefault, out var template));
        var engine = Engine([.. template.Rules]);
        for (var i = 0; i < 5; i++)
        {
            Send(engine, VitalKind.OxygenSaturation, 89);
            Advance(15);
        }

        var low = Assert.Single(engine.State.Open);
        Assert.Equal("spo2-low", low.RuleId);
        Assert.NotNull(engine.Acknowledge(low.AlertId, "nurse-ana", Now));

        for (var i = 0; i < 3; i++)
        {
            Send(engine, VitalKind.OxygenSaturation, 84);
            Advance(15);
        }

        Assert.Equal(["spo2-low", "spo2-critical"], engine.State.Open.Select(a => a.RuleId));
        Assert.Equal([AlertStatus.Acknowledged, AlertStatus.Active], engine.State.Open.Select(a => a.Status));
        Assert.Equal(AlertPriority.High, engine.State.Open[1].Priority);
    }

    [Fact]
    public void Escalations_keep_their_cadence_when_a_tick_comes_late_and_start_again_from_now_after_a_long_stop()
    {
        var engine = Engine(new AlertRule("spo2-low", AlertRuleType.Threshold, AlertPriority.High, VitalKind.OxygenSaturation, AlertDirection.Below, 90, 92, EscalateAfterSeconds: 300));
        Send(engine, VitalKind.OxygenSaturation, 85);
        var raisedAt = Now;

        // The first escalation's tick runs 20 s late (a busy grain): the second is still due 600 s after the raise.
        Advance(320);
        engine.Tick(Now);
        Assert.Equal(1, engine.State.Outbox[^1].Alert.EscalationLevel);
        Assert.Equal(raisedAt + 600_000, engine.NextDueMs);

        // A tick long after (the server was down): one escalation, the next counted from now, not a burst.
        Advance(1_000);
        engine.Tick(Now);
        engine.Tick(Now);
        Assert.Equal(2, engine.State.Outbox[^1].Alert.EscalationLevel);
        Assert.Equal(Now + 300_000, engine.NextDueMs);
    }

    [Fact]
    public void A_high_alert_escalates_until_it_is_acknowledged()
    {
        var engine = Engine(new AlertRule("spo2-low", AlertRuleType.Threshold, AlertPriority.High, VitalKind.OxygenSaturation, AlertDirection.Below, 90, 92, EscalateAfterSeconds: 300));

        Send(engine, VitalKind.OxygenSaturation, 85);
        var alertId = engine.State.Open.Single().AlertId;
        Assert.Equal(Now + 300_000, engine.NextDueMs);

        Advance(299);
        engine.Tick(Now);
        Assert.Single(engine.State.Outbox);
        Advance(1);
        engine.Tick(Now);
        Assert.Equal(AlertEventType.Escalated, engine.State.Outbox[^1].Type);
        Assert.Equal(1, engine.State.Outbox[^1].Alert.EscalationLevel);

        Advance(60);
        var acknowledged = engine.Acknowledge(alertId, "nurse-1", Now);
        Assert.Equal(AlertStatus.Acknowledged, acknowledged?.Status);
        Assert.Equal("nurse-1", acknowledged?.AcknowledgedBy);
        Assert.Null(engine.NextDueMs);

        Advance(3600);
        engine.Tick(Now);
        Assert.Equal([AlertEventType.Raised, AlertEventType.Escalated, AlertEventType.Acknowledged], engine.State.Outbox.Select(e => e.Type));

        // Acknowledged is not over: it clears when the patient recovers.
        Send(engine, VitalKind.OxygenSaturation, 96);
        Assert.Equal(AlertEventType.Cleared, engine.State.Outbox[^1].Type);
        Assert.Equal("nurse-1", engine.State.Outbox[^1].Alert.AcknowledgedBy);
    }

    [Fact]
    public void Readings_past_the_plausible_range_on_the_alarm_side_carry_a_sustain_under_way_to_its_alert_and_start_none()
    {
        var engine = Engine(
            new AlertRule("spo2-low", AlertRuleType.Threshold, AlertPriority.High, VitalKind.OxygenSaturation, AlertDirection.Below, 90, 92, SustainSeconds: 60),
            new AlertRule("implausible", AlertRuleType.Implausible, AlertPriority.Low));
        void Refused(double value)
        {
            engine.Tick(Now);
            engine.ObserveImplausible(new VitalReading(VitalKind.OxygenSaturation, Now, value), Now);
            engine.ObserveImplausibleBeyondRange(new VitalReading(VitalKind.OxygenSaturation, Now, value), Now);
        }

        // Refused alone, with no sustain under way: a sensor fault, no clinical alert.
        Refused(45);
        Assert.Equal(["implausible"], engine.State.Open.Select(alert => alert.RuleId));

        // 88, then readings under 50, refused as implausible, for the rest of the sustain: the patient worsening is not
        // left waiting for a plausible reading (a reading over 100 on the other side confirms nothing).
        Advance(60);
        Send(engine, VitalKind.OxygenSaturation, 88);
        Advance(20);
        Refused(46);
        Advance(20);
        Refused(120);
        Assert.DoesNotContain(engine.State.Open, alert => alert.RuleId == "spo2-low");
        Advance(25);
        Refused(44);
        var raised = Assert.Single(engine.State.Open, alert => alert.RuleId == "spo2-low");
        Assert.Equal(44, raised.Value);

        // Open, it is not cleared by them either: its recovery starts with plausible readings past the clear level.
        Advance(10);
        Send(engine, VitalKind.OxygenSaturation, 95);
        Advance(10);
        Refused(40);
        Advance(55);
        Send(engine, VitalKind.OxygenSaturation, 95);
        Assert.Contains(engine.State.Open, alert => alert.RuleId == "spo2-low");
    }

    [Fact]
    public void An_urgent_low_glucose_cleared_by_one_reading_raises_again_at_the_next_low_reading_five_minutes_on()
    {
        Assert.True(AlertRuleTemplates.TryGet(AlertRuleTemplates.Glucose, out var template));
        var engine = Engine([.. template.Rules]);
        bool UrgentOpen() => engine.State.Open.Any(alert => alert.RuleId == "glucose-urgent-low");

        // A CGM every five minutes: 52, then one reading of 61 (past the clear level), then 50 and 48.
        Send(engine, VitalKind.BloodGlucose, 52);
        Assert.True(UrgentOpen());
        Advance(300);
        Send(engine, VitalKind.BloodGlucose, 61);
        Assert.False(UrgentOpen());
        Advance(300);
        Send(engine, VitalKind.BloodGlucose, 50);
        Assert.True(UrgentOpen());
    }

    [Fact]
    public void A_rule_made_to_watch_another_vital_drops_the_old_conditions_snooze_and_re_arm_guard()
    {
        var heart = new AlertRule("r1", AlertRuleType.Threshold, AlertPriority.Medium, VitalKind.HeartRate, AlertDirection.Above, 120, 110, RearmSeconds: 1_800);
        var engine = Engine(heart);
        Send(engine, VitalKind.HeartRate, 135);
        engine.Snooze(engine.State.Open.Single().AlertId, Now + (8 * 3_600_000), "nurse-1", Now);

        // The same id made to watch SpO2, high: its first episode is news, not snoozed by the heart rate's snooze.
        Advance(60);
        engine.SetRules(new AlertRuleSet([heart with { Priority = AlertPriority.High, Kind = VitalKind.OxygenSaturation, Direction = AlertDirection.Below, Level = 88, ClearLevel = 92 }]), Now);
        Send(engine, VitalKind.OxygenSaturation, 85);
        var raised = Assert.Single(engine.State.Open);
        Assert.Equal((VitalKind.OxygenSaturation, AlertStatus.Active, null), (raised.Kind, raised.Status, raised.SnoozedBy));

        // A heart-rate episode that had just cleared holds no SpO2 episode back by its re-arm either.
        var other = Engine(heart);
        Send(other, VitalKind.HeartRate, 135);
        Advance(60);
        Send(other, VitalKind.HeartRate, 100);
        Assert.Empty(other.State.Open);
        other.SetRules(new AlertRuleSet([heart with { Kind = VitalKind.OxygenSaturation, Direction = AlertDirection.Below, Level = 88, ClearLevel = 92 }]), Now);
        Advance(60);
        Send(other, VitalKind.OxygenSaturation, 85);
        Assert.Equal(VitalKind.OxygenSaturation, Assert.Single(other.State.Open).Kind);
    }

    [Fact]
    public void A_snoozed_alert_is_silent_until_the_snooze_ends_and_then_active_again()
    {
        var engine = Engine(new AlertRule("hr-low", AlertRuleType.Threshold, AlertPriority.High, VitalKind.HeartRate, AlertDirection.Below, 40, 45, EscalateAfterSeconds: 120));

        Send(engine, VitalKind.HeartRate, 38);
        var alertId = engine.State.Open.Single().AlertId;
        var snoozed = engine.Snooze(alertId, Now + 600_000, "nurse-1", Now);
        Assert.Equal((AlertStatus.Snoozed, "nurse-1"), (snoozed?.Status, snoozed?.SnoozedBy));
        Assert.Equal("nurse-1", engine.State.Outbox[^1].Alert.SnoozedBy);
        Assert.Equal(Now + 600_000, engine.NextDueMs);

        // No escalation while snoozed, however long the condition lasts.
        for (var i = 0; i < 9; i++)
        {
            Advance(60);
            Send(engine, VitalKind.HeartRate, 37);
        }

        Assert.Equal([AlertEventType.Raised, AlertEventType.Snoozed], engine.State.Outbox.Select(e => e.Type));

        Advance(60);
        engine.Tick(Now);
        Assert.Equal(AlertEventType.Reactivated, engine.State.Outbox[^1].Type);
        Assert.Equal(AlertStatus.Active, engine.State.Outbox[^1].Alert.Status);
        Assert.Equal(alertId, engine.State.Outbox[^1].Alert.AlertId);

        Advance(120);
        engine.Tick(Now);
        Assert.Equal(AlertEventType.Escalated, engine.State.Outbox[^1].Type);
    }

    [Fact]
    public void An_acknowledged_alert_snoozed_is_acknowledged_again_when_the_snooze_ends_and_does_not_escalate()
    {
        var engine = Engine(new AlertRule("hr-low", AlertRuleType.Threshold, AlertPriority.High, VitalKind.HeartRate, AlertDirection.Below, 40, 45, EscalateAfterSeconds: 120));
        Send(engine, VitalKind.HeartRate, 38);
        var alertId = engine.State.Open.Single().AlertId;
        engine.Acknowledge(alertId, "nurse-1", Now);
        engine.Snooze(alertId, Now + 600_000, "dr-a", Now);

        Advance(600);
        engine.Tick(Now);
        var back = engine.State.Outbox[^1].Alert;
        Assert.Equal((AlertEventType.Reactivated, AlertStatus.Acknowledged, "nurse-1"), (engine.State.Outbox[^1].Type, back.Status, back.AcknowledgedBy));
        Assert.Null(engine.NextDueMs);

        Advance(3600);
        engine.Tick(Now);
        Assert.DoesNotContain(engine.State.Outbox, e => e.Type == AlertEventType.Escalated);
    }

    [Fact]
    public void An_alert_that_escalated_as_often_as_it_may_escalates_no_more_after_a_snooze()
    {
        var engine = Engine(new AlertRule("hr-low", AlertRuleType.Threshold, AlertPriority.High, VitalKind.HeartRate, AlertDirection.Below, 40, 45, EscalateAfterSeconds: 120));
        Send(engine, VitalKind.HeartRate, 38);
        var alertId = engine.State.Open.Single().AlertId;
        for (var i = 0; i < AlertEngine.MaxEscalations; i++)
        {
            Advance(120);
            engine.Tick(Now);
        }

        Assert.Equal(AlertEngine.MaxEscalations, engine.State.Open.Single().EscalationLevel);
        engine.Snooze(alertId, Now + 60_000, "dr-a", Now);
        Advance(60);
        engine.Tick(Now);
        Assert.Equal(AlertStatus.Active, engine.State.Open.Single().Status);

        Advance(3600);
        engine.Tick(Now);
        Assert.Equal(AlertEngine.MaxEscalations, engine.State.Outbox.Count(e => e.Type == AlertEventType.Escalated));
        Assert.Equal(AlertEngine.MaxEscalations, engine.State.Open.Single().EscalationLevel);
    }

    [Fact]
    public void A_new_episode_of_a_snoozed_rule_starts_snoozed()
    {
        var engine = Engine(new AlertRule("hr-high", AlertRuleType.Threshold, AlertPriority.Medium, VitalKind.HeartRate, AlertDirection.Above, 120, 110));

        Send(engine, VitalKind.HeartRate, 130);
        engine.Snooze(engine.State.Open.Single().AlertId, Now + 1_800_000, "dr-a", Now);
        Advance(60);
        Send(engine, VitalKind.HeartRate, 100);
        Advance(60);
        Send(engine, VitalKind.HeartRate, 135);

        var second = engine.State.Outbox[^1];
        Assert.Equal(AlertEventType.Raised, second.Type);
        Assert.Equal(AlertStatus.Snoozed, second.Alert.Status);
        Assert.Equal("dr-a", second.Alert.SnoozedBy);
        Assert.NotEqual(engine.State.Outbox[0].Alert.AlertId, second.Alert.AlertId);
    }

    [Fact]
    public void A_snooze_lasts_at_most_its_priority_allows()
    {
        var engine = Engine(
            new AlertRule("spo2-low", AlertRuleType.Threshold, AlertPriority.High, VitalKind.OxygenSaturation, AlertDirection.Below, 90, 92),
            new AlertRule("hr-high", AlertRuleType.Threshold, AlertPriority.Medium, VitalKind.HeartRate, AlertDirection.Above, 120, 110));
        Send(engine, VitalKind.OxygenSaturation, 85);
        Send(engine, VitalKind.HeartRate, 130);
        var day = Now + 86_400_000;

        var high = engine.Snooze(engine.State.Open.Single(alert => alert.RuleId == "spo2-low").AlertId, day, "dr-a", Now);
        var medium = engine.Snooze(engine.State.Open.Single(alert => alert.RuleId == "hr-high").AlertId, day, "dr-a", Now);

        Assert.Equal(DateTimeOffset.FromUnixTimeMilliseconds(Now) + TimeSpan.FromHours(1), high?.SnoozedUntil);
        Assert.Equal(DateTimeOffset.FromUnixTimeMilliseconds(Now) + TimeSpan.FromHours(8), medium?.SnoozedUntil);
        Advance(3_600);
        Send(engine, VitalKind.OxygenSaturation, 85);
        Assert.Equal(AlertStatus.Active, engine.State.Open.Single(alert => alert.RuleId == "spo2-low").Status);
    }

    [Fact]
    public void Acknowledging_a_snoozed_alert_ends_its_rules_snooze_so_a_later_episode_starts_active()
    {
        var engine = Engine(new AlertRule("hr-high", AlertRuleType.Threshold, AlertPriority.Medium, VitalKind.HeartRate, AlertDirection.Above, 120, 110));

        Send(engine, VitalKind.HeartRate, 130);
        var first = engine.State.Open.Single().AlertId;
        engine.Snooze(first, Now + 3_600_000, "dr-a", Now);
        Advance(300);
        engine.Acknowledge(first, "dr-a", Now);
        Advance(300);
        Send(engine, VitalKind.HeartRate, 100);
        Advance(600);
        Send(engine, VitalKind.HeartRate, 135);

        var second = engine.State.Outbox[^1];
        Assert.Equal(AlertEventType.Raised, second.Type);
        Assert.NotEqual(first, second.Alert.AlertId);
        Assert.Equal(AlertStatus.Active, second.Alert.Status);
    }

    [Fact]
    public void An_early_warning_sustain_is_forgotten_by_an_activation_long_after_its_vitals_were_judged()
    {
        var rule = new AlertRule("news2-medium", AlertRuleType.EarlyWarning, AlertPriority.Medium, Direction: AlertDirection.Above, Level: 3, SustainSeconds: 1800);
        var engine = Engine(rule);
        var start = Now;
        Send(engine, VitalKind.RespiratoryRate, 26);
        Advance(60);
        Send(engine, VitalKind.RespiratoryRate, 26);
        engine.RecordJudged();
        Assert.Empty(engine.State.Outbox);
        Assert.Equal(start, engine.State.PendingSinceMs!["news2-medium"]);

        // Five hours later (a crash between: the readings that may have ended the condition are not judged again), one
        // score over the level does not raise at once on a sustain carried over the gap.
        Advance(18_000);
        var late = new AlertEngine("p-1", engine.State);
        late.ForgetStaleSustains(Now);
        Send(late, VitalKind.RespiratoryRate, 26);
        Assert.Empty(late.State.Outbox);
    }

    [Fact]
    public void An_implausible_reading_raises_a_technical_alert_and_never_a_clinical_one()
    {
        var engine = Engine(
            new AlertRule("hr-high", AlertRuleType.Threshold, AlertPriority.High, VitalKind.HeartRate, AlertDirection.Above, 120, 110),
            new AlertRule("implausible", AlertRuleType.Implausible, AlertPriority.Low));

        engine.ObserveImplausible(new VitalReading(VitalKind.HeartRate, Now, 400), Now);
        engine.ObserveImplausible(new VitalReading(VitalKind.HeartRate, Now + 1, 410), Now);

        var raised = Assert.Single(engine.State.Outbox);
        Assert.Equal("implausible", raised.Alert.RuleId);
        Assert.Equal(AlertCategory.Technical, raised.Alert.Category);
        Assert.Equal(VitalKind.HeartRate, raised.Alert.Kind);
        Assert.Equal("Heart rate reading implausible: 400 /min is outside 20–300 /min; check the sensor", raised.Alert.Message);

        // A plausible reading right after does not clear it; one after a quiet minute does.
        Send(engine, VitalKind.HeartRate, 80);
        Assert.Single(engine.State.Outbox);
        Advance(60);
        Send(engine, VitalKind.HeartRate, 80);
        Assert.Equal(AlertEventType.Cleared, engine.State.Outbox[^1].Type);
    }

    [Fact]
    public void An_implausible_alert_open_across_a_restart_clears_only_after_a_quiet_minute_from_then()
    {
        var engine = Engine(new AlertRule("implausible", AlertRuleType.Implausible, AlertPriority.Low));
        engine.ObserveImplausible(new VitalReading(VitalKind.HeartRate, Now, 400), Now);
        Advance(10);

        // The grain comes back (its engine from the state written): the next plausible reading starts the quiet minute.
        var next = new AlertEngine("p-1", engine.State);
        Send(next, VitalKind.HeartRate, 80);
        Assert.Equal([AlertEventType.Raised], next.State.Outbox.Select(e => e.Type));
        Advance(60);
        Send(next, VitalKind.HeartRate, 80);
        Assert.Equal(AlertEventType.Cleared, next.State.Outbox[^1].Type);
    }

    [Fact]
    public void A_reading_stamped_ahead_of_the_clock_leaves_the_readings_after_it_by_the_clock_judged_across_an_activation()
    {
        var rule = new AlertRule("hr-high", AlertRuleType.Threshold, AlertPriority.Medium, VitalKind.HeartRate, AlertDirection.Above, 120, 110);
        var engine = Engine(rule);

        // A device nine minutes fast: what was judged counted by its stamp, every reading before then would be passed over.
        engine.Observe(new VitalReading(VitalKind.HeartRate, Now + 540_000, 80), Now);
        engine.EndOfReadings(Now);
        Advance(1);
        Send(engine, VitalKind.HeartRate, 150);

        var raised = Assert.Single(engine.State.Outbox);
        Assert.Equal(AlertEventType.Raised, raised.Type);
        Assert.Equal(Now, raised.Alert.TriggeredAt.ToUnixTimeMilliseconds());

        // No reading judged is judged again, the fast one neither; after an activation, one stamped before it and
        // arriving after is passed over (as a late reading is), one stamped after it judged.
        engine.Observe(new VitalReading(VitalKind.HeartRate, Now, 80), Now);
        engine.Observe(new VitalReading(VitalKind.HeartRate, Now - 500, 80), Now);
        engine.Observe(new VitalReading(VitalKind.HeartRate, Now + 539_000, 80), Now);
        Assert.Single(engine.State.Outbox);
        engine.RecordJudged();
        var activated = new AlertEngine("p-1", engine.State);
        Advance(1);
        activated.ResumeJudging(Now);
        Advance(1);
        activated.Observe(new VitalReading(VitalKind.HeartRate, Now - 1_500, 80), Now);
        Assert.Single(engine.State.Outbox);
        activated.Observe(new VitalReading(VitalKind.HeartRate, Now, 80), Now);
        Assert.Equal(AlertEventType.Cleared, engine.State.Outbox[^1].Type);
    }

    [Fact]
    public void Readings_stamped_ahead_are_judged_once_though_given_again_as_an_activation_and_then_its_call_give_them()
    {
        var engine = Engine(new AlertRule("hr-high", AlertRuleType.Threshold, AlertPriority.Medium, VitalKind.HeartRate, AlertDirection.Above, 120, 110, RearmSeconds: 300));
        var watch = Now + 240_000;
        VitalReading[] readings = [new(VitalKind.HeartRate, watch, 90), new(VitalKind.HeartRate, watch + 10_000, 135)];

        foreach (var reading in readings)
        {
            engine.Observe(reading, Now, seenAtMs: reading.TimestampMs);
        }

        engine.EndOfReadings(Now);
        foreach (var reading in readings)
        {
            engine.Observe(reading, Now);
        }

        // The 90 judged again would clear the alert the 135 raised, and the re-arm guard would keep it down.
        Assert.Equal(AlertEventType.Raised, Assert.Single(engine.State.Outbox).Type);
    }

    [Fact]
    public void A_sustain_is_measured_on_the_clock_when_a_device_set_right_and_a_fast_one_send_the_same_vital()
    {
        var engine = Engine(new AlertRule("hr-high", AlertRuleType.Threshold, AlertPriority.Medium, VitalKind.HeartRate, AlertDirection.Above, 120, 110, SustainSeconds: 60));

        // A chest strap set right, then a watch five minutes fast a second later: not a condition held five minutes.
        Send(engine, VitalKind.HeartRate, 135);
        Advance(1);
        engine.Observe(new VitalReading(VitalKind.HeartRate, Now + 300_000, 135), Now);
        Assert.Empty(engine.State.Outbox);

        // Held for a minute of the clock, by either: raised then.
        for (var second = 0; second < 60; second += 10)
        {
            Advance(10);
            Send(engine, VitalKind.HeartRate, 135);
        }

        Assert.Equal(AlertEventType.Raised, Assert.Single(engine.State.Outbox).Type);
    }

    [Fact]
    public void An_alert_raised_on_a_reading_stamped_ahead_of_the_clock_triggered_when_it_was_raised()
    {
        var engine = Engine(new AlertRule("hr-high", AlertRuleType.Threshold, AlertPriority.Medium, VitalKind.HeartRate, AlertDirection.Above, 120, 110));

        engine.Observe(new VitalReading(VitalKind.HeartRate, Now + 300_000, 150), Now);

        Assert.Equal(Now, Assert.Single(engine.State.Outbox).Alert.TriggeredAt.ToUnixTimeMilliseconds());
    }

    [Fact]
    public void Readings_from_long_ago_or_out_of_order_raise_nothing()
    {
        var engine = Engine(new AlertRule("hr-high", AlertRuleType.Threshold, AlertPriority.Medium, VitalKind.HeartRate, AlertDirection.Above, 120, 110));

        engine.Observe(new VitalReading(VitalKind.HeartRate, Now - 3_600_000, 150), Now);
        Send(engine, VitalKind.HeartRate, 80);
        engine.Observe(new VitalReading(VitalKind.HeartRate, Now - 1_000, 150), Now);

        Assert.Empty(engine.State.Outbox);
    }

    [Fact]
    public void Removing_a_rule_clears_its_open_alert_saying_why()
    {
        var engine = Engine(new AlertRule("hr-high", AlertRuleType.Threshold, AlertPriority.Medium, VitalKind.HeartRate, AlertDirection.Above, 120, 110));
        Send(engine, VitalKind.HeartRate, 150);

        engine.SetRules(AlertRuleSet.Empty, Now);

        Assert.Equal([AlertEventType.Raised, AlertEventType.Cleared], engine.State.Outbox.Select(e => e.Type));
        Assert.Empty(engine.State.Open);

        // Not a recovery: the clear says so. One the patient's values make says nothing.
        Assert.Equal(AlertEngine.RuleRemoved, engine.State.Outbox[1].Alert.ClearReason);
        engine.SetRules(new AlertRuleSet([new AlertRule("hr-high", AlertRuleType.Threshold, AlertPriority.Medium, VitalKind.HeartRate, AlertDirection.Above, 120, 110)]), Now);
        Advance(600);
        Send(engine, VitalKind.HeartRate, 150);
        Advance(1);
        Send(engine, VitalKind.HeartRate, 100);
        Assert.Equal(AlertEventType.Cleared, engine.State.Outbox[^1].Type);
        Assert.Null(engine.State.Outbox[^1].Alert.ClearReason);
    }

    [Fact]
    public void Events_are_numbered_in_order_and_alert_ids_name_the_patient()
    {
        var engine = Engine(new AlertRule("hr-high", AlertRuleType.Threshold, AlertPriority.Medium, VitalKind.HeartRate, AlertDirection.Above, 120, 110));
        Send(engine, VitalKind.HeartRate, 150);
        engine.Acknowledge(engine.State.Open.Single().AlertId, "dr-a", Now);
        Advance(1);
        Send(engine, VitalKind.HeartRate, 90);

        Assert.Equal([1L, 2L, 3L], engine.State.Outbox.Select(e => e.Seq));
        Assert.True(AlertIds.TryParse(engine.State.Outbox[0].Alert.AlertId, out var patientId, out var number));
        Assert.Equal("p-1", patientId);
        Assert.Equal(1, number);
    }

    [Fact]
    public void Readings_are_judged_once_in_time_order_across_activations_but_an_activation_seeds_without_judging()
    {
        var engine = Engine(new AlertRule("hr-high", AlertRuleType.Threshold, AlertPriority.Medium, VitalKind.HeartRate, AlertDirection.Above, 120, 110));
        Send(engine, VitalKind.HeartRate, 80);
        var judged = Now;
        engine.RecordJudged();

        // The next activation (the state as written) knows what was judged: a reading from before is not judged again.
        Advance(1);
        var next = new AlertEngine("p-1", engine.State);
        next.Seed(VitalKind.HeartRate, Now, 150, Now);
        next.Observe(new VitalReading(VitalKind.HeartRate, judged, 150), Now);
        Assert.Empty(next.State.Outbox);

        // A reading after it that the activation only seeded (a crash kept it from the rules) is judged when it comes back.
        next.Observe(new VitalReading(VitalKind.HeartRate, Now, 150), Now);
        Assert.Equal(AlertEventType.Raised, Assert.Single(next.State.Outbox).Type);
        Assert.Equal(Now, next.JudgedThroughMs(VitalKind.HeartRate));
    }

    [Fact]
    public void A_sustain_under_way_when_the_state_was_written_carries_on_in_the_next_activation()
    {
        // SpO2 low for five minutes raises. Four minutes in, the state is written (an acknowledgement of another alert,
        // say) and the grain starts over: the next activation carries the sustain on, raising at five minutes, not nine.
        var rule = new AlertRule("spo2-low", AlertRuleType.Threshold, AlertPriority.High, VitalKind.OxygenSaturation, AlertDirection.Below, 88, 90, SustainSeconds: 300);
        var engine = Engine(rule);
        var start = Now;
        for (var i = 0; i < 5; i++)
        {
            Send(engine, VitalKind.OxygenSaturation, 85);
            Advance(60);
        }

        engine.RecordJudged();
        Assert.Empty(engine.State.Outbox);

        var next = new AlertEngine("p-1", engine.State);
        next.ForgetStaleSustains(Now);
        Send(next, VitalKind.OxygenSaturation, 85);

        var raised = Assert.Single(next.State.Outbox);
        Assert.Equal(AlertEventType.Raised, raised.Type);
        Assert.Equal(start + 300_000, raised.Alert.TriggeredAt.ToUnixTimeMilliseconds());

        // An activation long after (the readings between not judged again: they are no longer news) starts it again.
        var state = new AlertState { Rules = engine.State.Rules, JudgedThroughMs = engine.State.JudgedThroughMs, PendingSinceMs = new() { ["spo2-low"] = start } };
        Advance(7_200);
        var late = new AlertEngine("p-1", state);
        late.ForgetStaleSustains(Now);
        Send(late, VitalKind.OxygenSaturation, 85);
        Assert.Empty(late.State.Outbox);
    }

    /// <summary>
    /// The engine an activation makes of <paramref name="engine"/>'s persisted state: the vitals the store shows
    /// (<paramref name="seen"/>) seen at their latest readings, and the no-data rules watching, the server started at
    /// <paramref name="serverStartedMs"/>.
    /// </summary>
    private AlertEngine Reactivated(AlertEngine engine, long serverStartedMs, params (VitalKind Kind, long LatestMs, double Value)[] seen)
    {
        var activated = new AlertEngine("p-1", engine.State);
        foreach (var (kind, latestMs, value) in seen)
        {
            activated.Seed(kind, latestMs, value, Now);
        }

        activated.StartWatching(serverStartedMs);
        return activated;
    }

    private AlertEngine Engine(params AlertRule[] rules)
    {
        var rulesSet = new AlertRuleSet(rules);
        Assert.Empty(AlertRuleValidation.Validate(rulesSet));
        var engine = new AlertEngine("p-1", new AlertState());
        engine.SetRules(rulesSet, Now);
        return engine;
    }

    private void Send(AlertEngine engine, VitalKind kind, double value)
    {
        engine.Tick(Now);
        engine.Observe(new VitalReading(kind, Now, value), Now);
        engine.EndOfReadings(Now);
    }

    private void Advance(int seconds) => _clock.Advance(TimeSpan.FromSeconds(seconds));

    private void AdvanceMs(int milliseconds) => _clock.Advance(TimeSpan.FromMilliseconds(milliseconds));
}
