using System.Text.Json;
using Telemetry.Core.Alerts;
using Telemetry.Core.Vitals;

namespace Telemetry.Core.Tests.Alerts;

public sealed class AlertRuleValidationTests
{
    [Theory]
    [InlineData(AlertRuleTemplates.AdultDefault)]
    [InlineData(AlertRuleTemplates.Glucose)]
    public void Every_template_is_a_valid_rule_set(string name)
    {
        Assert.True(AlertRuleTemplates.TryGet(name, out var rules));
        Assert.Empty(AlertRuleValidation.Validate(rules));
        Assert.Equal(name, rules.Template);
    }

    [Fact]
    public void A_clear_level_on_the_alarm_side_is_refused_because_the_alert_could_never_clear()
    {
        var errors = AlertRuleValidation.Validate(new AlertRuleSet(
        [
            new AlertRule("hr-high", AlertRuleType.Threshold, AlertPriority.High, VitalKind.HeartRate, AlertDirection.Above, 120, 125),
            new AlertRule("spo2-low", AlertRuleType.Threshold, AlertPriority.High, VitalKind.OxygenSaturation, AlertDirection.Below, 90, 88),
        ]));

        Assert.Equal(["rules[0].clearLevel", "rules[1].clearLevel"], errors.Keys.Order());
    }

    [Fact]
    public void A_level_no_plausible_reading_can_cross_or_a_score_that_could_never_clear_is_refused()
    {
        // Degrees Fahrenheit and SpO2 as a fraction, for vitals judged in Cel and %: silent for good, or firing on every
        // reading; a clear level out of range; a NEWS2 alert that would clear only below 0.
        var errors = AlertRuleValidation.Validate(new AlertRuleSet(
        [
            new AlertRule("fever", AlertRuleType.Threshold, AlertPriority.High, VitalKind.BodyTemperature, AlertDirection.Above, 100.4),
            new AlertRule("cold", AlertRuleType.Threshold, AlertPriority.High, VitalKind.BodyTemperature, AlertDirection.Below, 95),
            new AlertRule("spo2-low", AlertRuleType.Threshold, AlertPriority.High, VitalKind.OxygenSaturation, AlertDirection.Below, 0.9),
            new AlertRule("spo2-clear", AlertRuleType.Threshold, AlertPriority.High, VitalKind.OxygenSaturation, AlertDirection.Below, 90, 101),
            new AlertRule("news2", AlertRuleType.EarlyWarning, AlertPriority.High, Level: 5, ClearLevel: 0),
            new AlertRule("fine", AlertRuleType.Threshold, AlertPriority.High, VitalKind.BodyTemperature, AlertDirection.Above, 38.5, 38),
            new AlertRule("spo2-below-max", AlertRuleType.Threshold, AlertPriority.High, VitalKind.OxygenSaturation, AlertDirection.Below, 100),
            new AlertRule("hr-above-min", AlertRuleType.Threshold, AlertPriority.High, VitalKind.HeartRate, AlertDirection.Above, VitalCatalogue.Get(VitalKind.HeartRate).PlausibleMin),
            // Clear levels at the ends of the range: no plausible reading is past them, so these would never clear.
            new AlertRule("spo2-clear-at-max", AlertRuleType.Threshold, AlertPriority.High, VitalKind.OxygenSaturation, AlertDirection.Below, 90, VitalCatalogue.Get(VitalKind.OxygenSaturation).PlausibleMax),
            new AlertRule("hr-clear-at-min", AlertRuleType.Threshold, AlertPriority.High, VitalKind.HeartRate, AlertDirection.Above, 120, VitalCatalogue.Get(VitalKind.HeartRate).PlausibleMin),
            new AlertRule("spo2-clear-inside", AlertRuleType.Threshold, AlertPriority.High, VitalKind.OxygenSaturation, AlertDirection.Below, 90, 99.5),
        ]));

        Assert.Equal(
            ["rules[0].level", "rules[1].level", "rules[2].level", "rules[3].clearLevel", "rules[4].clearLevel", "rules[6].level", "rules[7].level", "rules[8].clearLevel", "rules[9].clearLevel"],
            errors.Keys.Order(StringComparer.Ordinal));
        Assert.Contains("Cel", errors["rules[0].level"][0], StringComparison.Ordinal);
    }

    [Fact]
    public void A_score_no_patient_can_reach_or_a_rate_that_would_clear_only_on_the_opposite_trend_is_refused()
    {
        // Five vitals of 3 points each: 15 at most. A falling rate that would clear only once the value rises, or, at 0,
        // might never clear while the value stays level.
        var errors = AlertRuleValidation.Validate(new AlertRuleSet(
        [
            new AlertRule("news2-16", AlertRuleType.EarlyWarning, AlertPriority.High, Direction: AlertDirection.Above, Level: 16),
            new AlertRule("news2-15", AlertRuleType.EarlyWarning, AlertPriority.High, Direction: AlertDirection.Above, Level: 15),
            new AlertRule("falling", AlertRuleType.RateOfChange, AlertPriority.Medium, VitalKind.BloodGlucose, AlertDirection.Falling, 2, -1),
            new AlertRule("falling-0", AlertRuleType.RateOfChange, AlertPriority.Medium, VitalKind.BloodGlucose, AlertDirection.Falling, 2, 0),
            new AlertRule("falling-slower", AlertRuleType.RateOfChange, AlertPriority.Medium, VitalKind.BloodGlucose, AlertDirection.Falling, 2, 0.5),
        ]));

        Assert.Equal(["rules[0].level", "rules[2].clearLevel", "rules[3].clearLevel"], errors.Keys.Order(StringComparer.Ordinal));
    }

    [Fact]
    public void Each_type_says_what_it_is_missing()
    {
        var errors = AlertRuleValidation.Validate(new AlertRuleSet(
        [
            new AlertRule("a", AlertRuleType.Threshold, AlertPriority.Medium),
            new AlertRule("b", AlertRuleType.RateOfChange, AlertPriority.Medium, VitalKind.BloodGlucose, AlertDirection.Above, 2, WindowSeconds: 10),
            new AlertRule("c", AlertRuleType.NoData, AlertPriority.High),
            new AlertRule("d", AlertRuleType.EarlyWarning, AlertPriority.High, VitalKind.HeartRate, Level: 30),
            new AlertRule("e e", (AlertRuleType)42, (AlertPriority)9, SustainSeconds: -1),
        ]));

        Assert.Equal(
            ["rules[0].direction", "rules[0].kind", "rules[1].direction", "rules[1].windowSeconds", "rules[2].priority", "rules[2].silenceSeconds",
             "rules[3].kind", "rules[3].level", "rules[4].id", "rules[4].priority", "rules[4].sustainSeconds", "rules[4].type"],
            errors.Keys.Order(StringComparer.Ordinal));
    }

    [Fact]
    public void Rules_read_and_write_as_the_api_documents_them()
    {
        const string Json = """
            {"rules":[{"id":"fall","type":"rate_of_change","priority":"medium","kind":"glucose","direction":"falling","level":2,"windowSeconds":900}]}
            """;

        var rules = JsonSerializer.Deserialize<AlertRuleSet>(Json, TelemetryJson.Options)!;

        var rule = Assert.Single(rules.Rules);
        Assert.Equal(AlertRuleType.RateOfChange, rule.Type);
        Assert.Equal(VitalKind.BloodGlucose, rule.Kind);
        Assert.Equal(AlertDirection.Falling, rule.Direction);
        var written = JsonSerializer.Serialize(rule, TelemetryJson.Options);
        Assert.Contains("\"kind\":\"blood_glucose\"", written, StringComparison.Ordinal);
        Assert.Contains("\"type\":\"rate_of_change\"", written, StringComparison.Ordinal);
        Assert.Contains("\"category\":\"clinical\"", written, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("p-1~7", "p-1", 7L)]
    [InlineData("ward.3:bed-2~12", "ward.3:bed-2", 12L)]
    public void Alert_ids_carry_their_patient(string alertId, string patientId, long number)
    {
        Assert.True(AlertIds.TryParse(alertId, out var parsedPatient, out var parsedNumber));
        Assert.Equal(patientId, parsedPatient);
        Assert.Equal(number, parsedNumber);
        Assert.Equal(alertId, AlertIds.Format(patientId, number));
    }

    [Theory]
    [InlineData("p-1")]
    [InlineData("~3")]
    [InlineData("p-1~")]
    [InlineData("p-1~0")]
    [InlineData("p-1~-2")]
    [InlineData("p 1~2")]
    public void Malformed_alert_ids_are_refused(string alertId) => Assert.False(AlertIds.TryParse(alertId, out _, out _));
}
