using Telemetry.Core.Alerts;
using Telemetry.Core.Readings;
using Telemetry.Core.Vitals;
using Telemetry.Grains.Alerts;

namespace Telemetry.Grains.Tests.Alerts;

public sealed class AlertReplayTests
{
    private const long Start = 1_795_000_000_000;

    [Fact]
    public void Replay_finds_each_excursion_of_a_history_once_with_when_it_began_and_ended()
    {
        var rules = new AlertRuleSet([new AlertRule("hr-high", AlertRuleType.Threshold, AlertPriority.Medium, VitalKind.HeartRate, AlertDirection.Above, 120, 110, SustainSeconds: 60)]);

        // A day of one reading a minute: two excursions over 120 (one too short to count), given out of order.
        var readings = Enumerable.Range(0, 1440).Select(minute => new VitalReading(VitalKind.HeartRate, Start + (minute * 60_000L), minute switch
        {
            >= 100 and < 130 => 130,
            200 => 140,
            _ => 80,
        })).Reverse().ToList();

        var alerts = AlertReplay.Run("p-1", rules, readings, Start, Start + 86_400_000);

        var alert = Assert.Single(alerts);
        Assert.Equal(AlertStatus.Cleared, alert.Status);
        Assert.Equal(Start + (101 * 60_000L), alert.TriggeredAt.ToUnixTimeMilliseconds());
        // Raised once 120 or more had held a minute, cleared once under 110 had held a minute: both confirmed alike.
        Assert.Equal(Start + (131 * 60_000L), alert.ClearedAt?.ToUnixTimeMilliseconds());
    }

    [Fact]
    public void Replay_raises_and_clears_spot_checks_when_their_sustain_would_have_passed_live()
    {
        var rules = new AlertRuleSet([new AlertRule("spo2-low", AlertRuleType.Threshold, AlertPriority.High, VitalKind.OxygenSaturation, AlertDirection.Below, 90, 92, SustainSeconds: 60)]);

        // Spot checks four hours apart: 84, then 97.
        VitalReading[] readings = [new(VitalKind.OxygenSaturation, Start, 84), new(VitalKind.OxygenSaturation, Start + 14_400_000, 97)];

        var alert = Assert.Single(AlertReplay.Run("p-1", rules, readings, Start, Start + 28_800_000));

        // Raised once its minute, and a minute for a next reading, had passed after the first, not when the next reading
        // came; cleared likewise after the second.
        Assert.Equal(Start + 60_000, alert.TriggeredAt.ToUnixTimeMilliseconds());
        Assert.Equal(Start + 120_001, alert.RaisedAt.ToUnixTimeMilliseconds());
        Assert.Equal(Start + 14_520_001, alert.ClearedAt?.ToUnixTimeMilliseconds());
    }

    [Fact]
    public void Replay_judges_a_reading_stamped_when_a_lone_ones_clock_would_complete_first()
    {
        var rules = new AlertRuleSet([new AlertRule("hr-high", AlertRuleType.Threshold, AlertPriority.Medium, VitalKind.HeartRate, AlertDirection.Above, 120, 110, SustainSeconds: 60)]);

        // The range's first reading is over the level, its next, at the very moment the clock would complete the first,
        // back under the clear level: no alert.
        VitalReading[] readings = [new(VitalKind.HeartRate, Start, 130), new(VitalKind.HeartRate, Start + 120_000, 100)];

        Assert.Empty(AlertReplay.Run("p-1", rules, readings, Start, Start + 3_600_000));
    }

    [Fact]
    public void Replay_scores_the_readings_of_one_moment_together()
    {
        var rules = new AlertRuleSet([new AlertRule("news2", AlertRuleType.EarlyWarning, AlertPriority.Medium, Direction: AlertDirection.Above, Level: 5, ClearLevel: 3)]);

        // NEWS2 5 at the start (heart rate 135, SpO2 97, respiratory rate 22), then, a minute on, the heart rate falls as
        // the SpO2 does, at one moment: still 5. Scored reading by reading, the heart rate alone would read 2 and clear.
        VitalReading[] readings =
        [
            new(VitalKind.HeartRate, Start, 135), new(VitalKind.OxygenSaturation, Start, 97), new(VitalKind.RespiratoryRate, Start, 22),
            new(VitalKind.HeartRate, Start + 60_000, 85), new(VitalKind.OxygenSaturation, Start + 60_000, 91),
        ];

        var alert = Assert.Single(AlertReplay.Run("p-1", rules, readings, Start, Start + 120_000));

        Assert.Equal(AlertStatus.Active, alert.Status);
        Assert.Equal(Start, alert.TriggeredAt.ToUnixTimeMilliseconds());
    }

    [Fact]
    public void Replay_raises_no_data_for_gaps_in_the_history()
    {
        var rules = new AlertRuleSet([new AlertRule("no-data", AlertRuleType.NoData, AlertPriority.Low, SilenceSeconds: 600)]);
        var readings = new[] { 0, 5, 10, 40, 45 }.Select(minute => new VitalReading(VitalKind.OxygenSaturation, Start + (minute * 60_000L), 97));

        var alert = Assert.Single(AlertReplay.Run("p-1", rules, readings, Start, Start + (50 * 60_000L)));

        Assert.Equal(Start + (10 * 60_000L), alert.TriggeredAt.ToUnixTimeMilliseconds());
        Assert.Equal(Start + (40 * 60_000L), alert.ClearedAt?.ToUnixTimeMilliseconds());
    }

    [Fact]
    public void The_vitals_a_rule_set_needs_are_read_and_no_others()
    {
        Assert.Equal([VitalKind.BloodGlucose], AlertReplay.KindsNeeded(new AlertRuleSet([new AlertRule("low", AlertRuleType.Threshold, AlertPriority.High, VitalKind.BloodGlucose, AlertDirection.Below, 70)])));
        Assert.Equal(5, AlertReplay.KindsNeeded(new AlertRuleSet([new AlertRule("news", AlertRuleType.EarlyWarning, AlertPriority.High, Level: 7)])).Count);
        Assert.Equal(VitalCatalogue.All.Count, AlertReplay.KindsNeeded(new AlertRuleSet([new AlertRule("silent", AlertRuleType.NoData, AlertPriority.Low, SilenceSeconds: 60)])).Count);
    }
}
