using Microsoft.Extensions.DependencyInjection;
using Telemetry.Core.Alerts;
using Telemetry.Core.Grains;
using Telemetry.Core.Readings;
using Telemetry.Core.Storage;
using Telemetry.Core.Vitals;

namespace Telemetry.Grains.Tests.Alerts;

/// <summary>Alerts in the patient's grain, in Orleans' test cluster over a real DuckDB file: raised, stored, published, timed.</summary>
public sealed class PatientAlertTests(ClusterFixture fixture) : IClassFixture<ClusterFixture>
{
    private static readonly object CommitLock = new();

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
        await Grain(patient).SetAlertRulesAsync(HeartRules);

        await CommitAndApplyAsync(patient, new VitalReading(VitalKind.HeartRate, Now, 80));
        await CommitAndApplyAsync(patient, new VitalReading(VitalKind.HeartRate, Now + 1, 135));

        var open = Assert.Single(await Grain(patient).GetOpenAlertsAsync());
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
    public async Task Acknowledging_stops_escalation_and_is_kept_in_the_history()
    {
        var patient = "p-alert-ack";
        await Grain(patient).SetAlertRulesAsync(HeartRules);
        await CommitAndApplyAsync(patient, new VitalReading(VitalKind.HeartRate, Now, 150));
        var alertId = Assert.Single(await Grain(patient).GetOpenAlertsAsync()).AlertId;

        var acknowledged = await Grain(patient).AcknowledgeAsync(alertId, "nurse-1");

        Assert.Equal(AlertStatus.Acknowledged, acknowledged?.Status);
        Assert.Null(acknowledged?.EscalatesAt);
        Assert.Null(await Grain(patient).AcknowledgeAsync(patient + "~99", "nurse-1"));
        Assert.Equal(AlertStatus.Acknowledged, (await Store.GetAsync(alertId))?.Status);
        Assert.Equal([AlertEventType.Raised, AlertEventType.Acknowledged], Publisher.Of(patient).Select(e => e.Type));
    }

    [Fact]
    public async Task Implausible_readings_of_a_batch_raise_a_technical_alert_only()
    {
        var patient = "p-alert-implausible";
        await Grain(patient).SetAlertRulesAsync(HeartRules);

        var commitId = Commit(patient, new VitalReading(VitalKind.HeartRate, Now, 70));
        await Grain(patient).ApplyAsync(new PatientReadings(commitId, [new VitalReading(VitalKind.HeartRate, Now, 70)], [new VitalReading(VitalKind.HeartRate, Now, 400)]));

        var open = Assert.Single(await Grain(patient).GetOpenAlertsAsync());
        Assert.Equal("implausible", open.RuleId);
        Assert.Equal(AlertCategory.Technical, open.Category);
    }

    [Fact]
    public async Task A_silent_device_raises_a_no_data_alert_with_no_traffic_at_all()
    {
        var patient = "p-alert-silent";
        await Grain(patient).SetAlertRulesAsync(new AlertRuleSet([new AlertRule("no-data", AlertRuleType.NoData, AlertPriority.Medium, SilenceSeconds: 5)]));
        await CommitAndApplyAsync(patient, new VitalReading(VitalKind.HeartRate, Now, 70));

        // Nothing more is sent: only the grain's timer can raise it.
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (Publisher.Of(patient).Count == 0 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(200);
        }

        var raised = Assert.Single(Publisher.Of(patient));
        Assert.Equal("no-data", raised.Alert.RuleId);
        Assert.Equal(AlertCategory.Technical, raised.Alert.Category);

        await CommitAndApplyAsync(patient, new VitalReading(VitalKind.HeartRate, Now, 71));
        Assert.Equal([AlertEventType.Raised, AlertEventType.Cleared], Publisher.Of(patient).Select(e => e.Type));
    }

    [Fact]
    public async Task Removing_every_rule_clears_open_alerts_and_stops_watching_the_patient()
    {
        var patient = "p-alert-remove";
        await Grain(patient).SetAlertRulesAsync(HeartRules);
        await CommitAndApplyAsync(patient, new VitalReading(VitalKind.HeartRate, Now, 150));

        await Grain(patient).SetAlertRulesAsync(AlertRuleSet.Empty);

        Assert.Empty(await Grain(patient).GetOpenAlertsAsync());
        Assert.Empty(await Grain(patient).GetAlertRulesAsync() is { Rules: var rules } ? rules : []);
        Assert.DoesNotContain(patient, await Store.WatchedPatientsAsync());
        Assert.Equal([AlertEventType.Raised, AlertEventType.Cleared], Publisher.Of(patient).Select(e => e.Type));
    }

    private IPatientGrain Grain(string patientId) => fixture.Cluster.GrainFactory.GetGrain<IPatientGrain>(patientId);

    private async Task CommitAndApplyAsync(string patientId, params VitalReading[] readings)
    {
        var commitId = Commit(patientId, readings);
        await Grain(patientId).ApplyAsync(new PatientReadings(commitId, readings));
    }

    private long Commit(string patientId, params VitalReading[] readings)
    {
        lock (CommitLock)
        {
            var outcomes = new BatchOutcome[1];
            return fixture.SiloServices.GetRequiredService<Telemetry.Storage.DuckDb.DuckDbRawSeriesStore>().Commit([new DeviceBatch("device-" + patientId, patientId, 0, readings)], outcomes);
        }
    }
}
