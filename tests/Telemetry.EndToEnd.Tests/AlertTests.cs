using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using MQTTnet;

namespace Telemetry.EndToEnd.Tests;

/// <summary>Alerts end to end: a reading over MQTT raises an alert that reaches an MQTT subscriber, an SSE client and a webhook.</summary>
public sealed partial class AlertTests
{
    private const string WebhookSecret = "a-webhook-secret-for-the-ward";

    [Fact]
    public async Task A_reading_over_MQTT_raises_an_alert_for_MQTT_SSE_and_webhook_and_acknowledging_it_stops_escalation()
    {
        // The receiver is down for a dozen attempts (a second apart here): the event waits for it, and so do those after it.
        using var webhook = new WebhookReceiver(WebhookSecret) { FailFirst = 12 };

        // Another, being deployed, answers 404 a few times: the event waits for it too, and is not given up.
        using var redeploying = new WebhookReceiver(WebhookSecret) { FailFirst = 3, FailWith = 404 };
        await using var server = await TelemetryServer.StartNewAsync(new Dictionary<string, string>
        {
            ["Telemetry__Alerts__Webhooks__0__Name"] = "ward",
            ["Telemetry__Alerts__Webhooks__0__Url"] = webhook.Url,
            ["Telemetry__Alerts__Webhooks__0__Secret"] = WebhookSecret,
            ["Telemetry__Alerts__Webhooks__1__Name"] = "records",
            ["Telemetry__Alerts__Webhooks__1__Url"] = redeploying.Url,
            ["Telemetry__Alerts__Webhooks__1__Secret"] = WebhookSecret,
            ["Telemetry__Alerts__WebhookMaxBackoffSeconds"] = "1",
        });
        var watchToken = await server.ProvisionAsync("alert-watch", "p-alert");
        var phoneToken = await server.ProvisionAsync("alert-phone", "p-alert");
        await PutRulesAsync(server, "p-alert", """
            {"rules":[{"id":"hr-high","type":"threshold","kind":"heart_rate","direction":"above","level":120,"clearLevel":110,
                       "priority":"high","escalateAfterSeconds":2}]}
            """);

        using var phone = await Devices.ConnectMqttAsync(server, "alert-phone", phoneToken);
        var mqtt = await Eventually.SubscribeAsync(phone, "patients/p-alert/alerts");
        await using var stream = await AlertStreamClient.OpenAsync(server, "/api/patients/p-alert/alerts/stream");
        await using var clinicianList = await AlertStreamClient.OpenAsync(server, "/api/alerts/stream");
        using var watch = await Devices.ConnectMqttAsync(server, "alert-watch", watchToken);

        var ack = await Devices.PublishAsync(watch, "devices/alert-watch/vitals", Devices.JsonHeartRates(1, DateTimeOffset.UtcNow, 135));
        Assert.Equal(MqttClientPublishReasonCode.Success, ack.ReasonCode);

        var overMqtt = await Eventually.FirstAsync(mqtt, a => a.Type == "raised");
        var overSse = await Eventually.FirstAsync(stream.Received, e => e.Alert.Type == "raised");
        var inList = await Eventually.FirstAsync(clinicianList.Received, e => e.Alert.Type == "raised");
        var overWebhook = await Eventually.FirstAsync(webhook.Received, a => a.Type == "raised", seconds: 60);
        var alertId = overMqtt.AlertId;
        Assert.Equal(alertId, overSse.Alert.AlertId);
        Assert.Equal(alertId, inList.Alert.AlertId);
        Assert.Equal(alertId, overWebhook.AlertId);
        Assert.StartsWith("p-alert~", alertId, StringComparison.Ordinal);
        Assert.Equal("Heart rate 135 /min is at or above 120 /min", overMqtt.Json.GetProperty("alert").GetProperty("message").GetString());
        Assert.Equal("heart_rate", overMqtt.Json.GetProperty("alert").GetProperty("kind").GetString());
        Assert.Equal("high", overMqtt.Json.GetProperty("alert").GetProperty("priority").GetString());
        Assert.True(webhook.Attempts >= 13, "the first twelve deliveries were refused with 503 and retried");
        Assert.Equal(alertId, (await Eventually.FirstAsync(redeploying.Received, a => a.Type == "raised", seconds: 60)).AlertId);
        Assert.True(redeploying.Attempts >= 4, "the first three deliveries were answered 404 and retried");
        Assert.Equal("raised", webhook.Received.First().Type);
        Assert.Empty(webhook.BadSignatures);

        // Each event given to a receiver is recorded once (not once per attempt), before it goes; so is each device's
        // subscription to its patient's alerts, and one refused with the patient it named.
        var delivered = (await server.Http.GetFromJsonAsync<JsonElement>("/api/audit?actor=webhook:ward&patientId=p-alert")).EnumerateArray()
            .Select(r => r.GetProperty("action").GetString()!).ToList();
        Assert.NotEmpty(delivered);
        Assert.Equal(delivered.Count, delivered.Distinct().Count());
        Assert.All(delivered, action => Assert.StartsWith("POST alert event ", action, StringComparison.Ordinal));
        var subscribed = Assert.Single((await server.Http.GetFromJsonAsync<JsonElement>("/api/audit?actor=device:alert-phone")).EnumerateArray());
        Assert.Equal(("p-alert", "MQTT SUBSCRIBE patients/p-alert/alerts", 200), (subscribed.GetProperty("patientId").GetString(), subscribed.GetProperty("action").GetString(), subscribed.GetProperty("status").GetInt32()));
        var refused = await watch.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter("patients/p-someone-else/alerts").Build());
        Assert.Equal(MqttClientSubscribeResultCode.NotAuthorized, Assert.Single(refused.Items).ResultCode);
        var denied = Assert.Single((await server.Http.GetFromJsonAsync<JsonElement>("/api/audit?actor=device:alert-watch")).EnumerateArray());
        Assert.Equal(("p-someone-else", 403), (denied.GetProperty("patientId").GetString(), denied.GetProperty("status").GetInt32()));

        // Once a connection: subscribing again, or again to the same other patient's alerts, adds nothing; nor does a
        // filter that names no patient.
        await phone.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter("patients/p-alert/alerts").Build());
        await watch.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter("patients/p-someone-else/alerts").WithTopicFilter("#").Build());
        Assert.Single((await server.Http.GetFromJsonAsync<JsonElement>("/api/audit?actor=device:alert-phone")).EnumerateArray());
        Assert.Single((await server.Http.GetFromJsonAsync<JsonElement>("/api/audit?actor=device:alert-watch")).EnumerateArray());

        // Not acknowledged within two seconds: it escalates, on every channel.
        await Eventually.FirstAsync(mqtt, a => a.Type == "escalated");
        await Eventually.FirstAsync(webhook.Received, a => a.Type == "escalated");

        // A high-priority alert snoozes for an hour at most; a shorter snooze says who and until when.
        using var tooLong = await server.Http.PostAsJsonAsync($"/api/alerts/{alertId}/snooze", new { minutes = 120, by = "nurse-ana" });
        Assert.Equal(HttpStatusCode.BadRequest, tooLong.StatusCode);
        Assert.Contains("at most 60 minutes", await tooLong.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        using var snoozedResponse = await server.Http.PostAsJsonAsync($"/api/alerts/{alertId}/snooze", new { minutes = 30, by = "nurse-ana" });
        Assert.Equal(HttpStatusCode.OK, snoozedResponse.StatusCode);
        var snoozed = JsonDocument.Parse(await snoozedResponse.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal(("snoozed", "nurse-ana"), (snoozed.GetProperty("status").GetString(), snoozed.GetProperty("snoozedBy").GetString()));
        Assert.InRange(snoozed.GetProperty("snoozedUntil").GetDateTimeOffset() - DateTimeOffset.UtcNow, TimeSpan.FromMinutes(29), TimeSpan.FromMinutes(30));
        await Eventually.FirstAsync(stream.Received, e => e.Alert.Type == "snoozed");

        using var acknowledged = await server.Http.PostAsJsonAsync($"/api/alerts/{alertId}/ack", new { by = "nurse-ana" });
        Assert.Equal(HttpStatusCode.OK, acknowledged.StatusCode);
        var body = JsonDocument.Parse(await acknowledged.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal("acknowledged", body.GetProperty("status").GetString());
        Assert.Equal("nurse-ana", body.GetProperty("acknowledgedBy").GetString());
        await Eventually.FirstAsync(stream.Received, e => e.Alert.Type == "acknowledged");

        // Five escalation periods later, nothing more has escalated.
        var escalationsAtAck = stream.Received.Count(e => e.Alert.Type == "escalated");
        await Task.Delay(TimeSpan.FromSeconds(5));
        Assert.Equal(escalationsAtAck, stream.Received.Count(e => e.Alert.Type == "escalated"));
        Assert.Equal(escalationsAtAck, mqtt.Count(e => e.Type == "escalated"));

        // The episode clears when the heart rate comes back under the clear level, and the history has it all.
        await Devices.PublishAsync(watch, "devices/alert-watch/vitals", Devices.JsonHeartRates(2, DateTimeOffset.UtcNow, 100));
        await Eventually.FirstAsync(stream.Received, e => e.Alert.Type == "cleared");
        var history = await server.Http.GetFromJsonAsync<JsonElement>("/api/patients/p-alert/alerts");
        var stored = Assert.Single(history.EnumerateArray());
        Assert.Equal("cleared", stored.GetProperty("status").GetString());
        Assert.Equal("nurse-ana", stored.GetProperty("acknowledgedBy").GetString());
        Assert.True(stored.GetProperty("escalationLevel").GetInt32() >= 1);
        Assert.Empty((await server.Http.GetFromJsonAsync<JsonElement>("/api/alerts")).EnumerateArray());

        // The server timed the two events readings made, raised and cleared, from the readings' arrival to the alert's
        // hand-off; not the escalations (the clock made them) nor the acknowledgement (a clinician did).
        var metrics = await server.Http.GetStringAsync("/metrics");
        var (count, seconds) = AlertDelays(metrics);
        Assert.Equal(2, count);
        Assert.Matches("""telemetry_alerts_delay_seconds_count\{[^}]*type="Raised"[^}]*\} 1""", metrics);
        Assert.Matches("""telemetry_alerts_delay_seconds_count\{[^}]*type="Cleared"[^}]*\} 1""", metrics);
        Assert.True(seconds > 0, $"two events handed off {seconds} s after their readings arrived");

        // SSE ids are positions: a client that reconnects after the first event gets the rest, in order.
        var firstId = stream.Received.First().Id;
        await using var resumed = await AlertStreamClient.OpenAsync(server, "/api/patients/p-alert/alerts/stream", firstId);
        await Eventually.FirstAsync(resumed.Received, e => e.Alert.Type == "cleared");
        Assert.Equal(stream.Received.Skip(1).Select(e => e.Id), resumed.Received.Select(e => e.Id));

        // A cleared alert can no longer be acknowledged; an unknown one is not found.
        using var late = await server.Http.PostAsync($"/api/alerts/{alertId}/ack", null);
        Assert.Equal(HttpStatusCode.Conflict, late.StatusCode);
        using var unknown = await server.Http.PostAsync("/api/alerts/p-alert~999/ack", null);
        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
    }

    [Fact]
    public async Task An_event_a_webhook_receiver_always_fails_is_passed_over_once_it_takes_another_patients()
    {
        // The receiver fails every event of one patient (a patient its system does not know, answered 500), and takes
        // the rest: that patient's alert must not hold back another patient's for the day a receiver that is down gets.
        // Another receiver answers its first three deliveries 500 and then recovers: flapping, it loses nothing.
        using var webhook = new WebhookReceiver(WebhookSecret) { FailsOn = alert => alert.AlertId.StartsWith("p-unknown-to-emr~", StringComparison.Ordinal) };
        using var flapping = new WebhookReceiver(WebhookSecret) { FailFirst = 3, FailWith = 500 };

        // A third answers 500 to everything: each pass-over offers it the other patient's event again.
        using var down = new WebhookReceiver(WebhookSecret) { FailsOn = _ => true };
        await using var server = await TelemetryServer.StartNewAsync(new Dictionary<string, string>
        {
            ["Telemetry__Alerts__Webhooks__0__Name"] = "emr",
            ["Telemetry__Alerts__Webhooks__0__Url"] = webhook.Url,
            ["Telemetry__Alerts__Webhooks__0__Secret"] = WebhookSecret,
            ["Telemetry__Alerts__Webhooks__1__Name"] = "flapping",
            ["Telemetry__Alerts__Webhooks__1__Url"] = flapping.Url,
            ["Telemetry__Alerts__Webhooks__1__Secret"] = WebhookSecret,
            ["Telemetry__Alerts__Webhooks__2__Name"] = "down",
            ["Telemetry__Alerts__Webhooks__2__Url"] = down.Url,
            ["Telemetry__Alerts__Webhooks__2__Secret"] = WebhookSecret,
            ["Telemetry__Alerts__WebhookMaxBackoffSeconds"] = "1",
            ["Telemetry__Alerts__WebhookPassOverAfter"] = "00:00:02",
        });
        const string Rules = """{"rules":[{"id":"hr-high","type":"threshold","kind":"heart_rate","direction":"above","level":120,"priority":"high"}]}""";
        foreach (var patientId in new[] { "p-unknown-to-emr", "p-known-to-emr" })
        {
            await PutRulesAsync(server, patientId, Rules);
        }

        var unknownToken = await server.ProvisionAsync("emr-watch-1", "p-unknown-to-emr");
        var knownToken = await server.ProvisionAsync("emr-watch-2", "p-known-to-emr");
        await using var stream = await AlertStreamClient.OpenAsync(server, "/api/alerts/stream");
        using var first = await Devices.ConnectMqttAsync(server, "emr-watch-1", unknownToken);
        await Devices.PublishAsync(first, "devices/emr-watch-1/vitals", Devices.JsonHeartRates(1, DateTimeOffset.UtcNow, 135));
        await Eventually.FirstAsync(stream.Received, e => e.Alert.AlertId.StartsWith("p-unknown-to-emr~", StringComparison.Ordinal));
        using var second = await Devices.ConnectMqttAsync(server, "emr-watch-2", knownToken);
        await Devices.PublishAsync(second, "devices/emr-watch-2/vitals", Devices.JsonHeartRates(1, DateTimeOffset.UtcNow, 135));

        var delivered = await Eventually.FirstAsync(webhook.Received, alert => alert.Type == "raised", seconds: 30);
        Assert.StartsWith("p-known-to-emr~", delivered.AlertId, StringComparison.Ordinal);
        // (The event taken ahead is answered before the failing one is offered again and given up.)
        const string GivenUp = "again after the receiver took another patient's event";
        Assert.Contains(GivenUp, await Eventually.ReadAsync(() => Task.FromResult(server.Output), output => output.Contains(GivenUp, StringComparison.Ordinal), TimeSpan.FromSeconds(30)), StringComparison.Ordinal);

        // Both patients' alerts reach the flapping receiver, each once; the other patient's, taken ahead of its turn by
        // the first receiver, is not sent to it again when its turn comes.
        await Eventually.ReadAsync(() => Task.FromResult(flapping.Received.Count(alert => alert.Type == "raised")), count => count >= 2, TimeSpan.FromSeconds(30));
        await Task.Delay(TimeSpan.FromSeconds(2));
        Assert.Equal(2, flapping.Received.Where(alert => alert.Type == "raised").Select(alert => alert.AlertId).Distinct().Count());
        Assert.Equal(2, flapping.Received.Count(alert => alert.Type == "raised"));
        Assert.Single(webhook.Received, alert => alert.Type == "raised");
        Assert.DoesNotContain(webhook.Received, alert => alert.AlertId.StartsWith("p-unknown-to-emr~", StringComparison.Ordinal));
        var metrics = await server.Http.GetStringAsync("/metrics");
        Assert.Matches("""telemetry_alerts_given_up_total\{[^}]*channel="webhook"[^}]*\} 1\b""", metrics);

        // The receiver that is down was offered each event, the second again at every pass-over: each recorded once.
        await Eventually.ReadAsync(() => Task.FromResult(down.Attempts), attempts => attempts >= 6, TimeSpan.FromSeconds(30));
        var offered = (await server.Http.GetFromJsonAsync<JsonElement>("/api/audit?actor=webhook:down")).EnumerateArray()
            .Select(record => record.GetProperty("action").GetString()).ToList();
        Assert.Equal(2, offered.Count);
        Assert.Equal(2, offered.Distinct().Count());
    }

    [Fact]
    public async Task Alert_streams_keep_to_what_their_reader_may_see_and_end_when_the_token_expires()
    {
        // Streams ask again every second whom their reader may see (30 s by default).
        await using var server = await TelemetryServer.StartNewAsync(new Dictionary<string, string> { ["Telemetry__Auth__StreamAccessCheckSeconds"] = "1" });
        var firstToken = await server.ProvisionAsync("sa-watch-1", "p-sa-1");
        var secondToken = await server.ProvisionAsync("sa-watch-2", "p-sa-2");
        const string Rules = """{"rules":[{"id":"hr-high","type":"threshold","kind":"heart_rate","direction":"above","level":120,"clearLevel":110,"priority":"high"}]}""";
        await PutRulesAsync(server, "p-sa-1", Rules);
        await PutRulesAsync(server, "p-sa-2", Rules);
        using var team = await server.Http.PutAsJsonAsync("/api/care-teams/sa-ward", new { patients = new[] { "p-sa-1", "p-sa-2" } });
        using var clinician = server.ClientWith(await server.MintTokenAsync("--role", "clinician", "--sub", "dr-sa", "--care-team", "sa-ward"));
        await using var one = await AlertStreamClient.OpenAsync(server, "/api/patients/p-sa-1/alerts/stream", client: clinician);
        await using var all = await AlertStreamClient.OpenAsync(server, "/api/alerts/stream", client: clinician);
        await using var admin = await AlertStreamClient.OpenAsync(server, "/api/alerts/stream");
        await using var oneLive = await AlertStreamClient.OpenAsync(server, "/api/patients/p-sa-1/live/stream", client: clinician);
        await using var allLive = await AlertStreamClient.OpenAsync(server, "/api/live/stream", client: clinician);
        using var first = await Devices.ConnectMqttAsync(server, "sa-watch-1", firstToken);
        using var second = await Devices.ConnectMqttAsync(server, "sa-watch-2", secondToken);

        await Devices.PublishAsync(first, "devices/sa-watch-1/vitals", Devices.JsonHeartRates(1, DateTimeOffset.UtcNow, 135));
        await Eventually.FirstAsync(one.Received, e => e.Alert.Type == "raised");
        await Eventually.FirstAsync(all.Received, e => e.Alert.Type == "raised");

        // The stream across patients recorded the patient whose alert it sent, beside its own record.
        var recorded = await server.Http.GetFromJsonAsync<JsonElement>("/api/audit?actor=dr-sa&patientId=p-sa-1");
        Assert.Contains(recorded.EnumerateArray(), record => record.GetProperty("action").GetString() == "GET /api/alerts/stream");

        // The first patient leaves the clinician's team: the one-patient stream ends, the other no longer sends theirs.
        using var moved = await server.Http.PutAsJsonAsync("/api/care-teams/sa-ward", new { patients = new[] { "p-sa-2" } });
        Assert.Equal("revoked", await Eventually.FirstAsync(one.Others, _ => true));

        // So do the live vitals: the one-patient stream ends, the other says the patient was removed from it.
        await Eventually.FirstAsync(oneLive.Others, name => name == "revoked");
        await Eventually.FirstAsync(allLive.Others, name => name == "removed");
        await Task.Delay(TimeSpan.FromSeconds(2));
        await Devices.PublishAsync(first, "devices/sa-watch-1/vitals", Devices.JsonHeartRates(2, DateTimeOffset.UtcNow, 100));
        await Eventually.FirstAsync(admin.Received, e => e.Alert.Type == "cleared");
        await Devices.PublishAsync(second, "devices/sa-watch-2/vitals", Devices.JsonHeartRates(1, DateTimeOffset.UtcNow, 140));
        await Eventually.FirstAsync(all.Received, e => e.Alert.AlertId.StartsWith("p-sa-2~", StringComparison.Ordinal));
        Assert.DoesNotContain(all.Received, e => e.Alert.Type == "cleared");

        // A token that expires ends its stream with 'expired' (about 4 s from now).
        using var brief = server.ClientWith(await server.MintTokenAsync("--role", "clinician", "--care-team", "sa-ward", "--hours", "0.001"));
        await using var expiring = await AlertStreamClient.OpenAsync(server, "/api/alerts/stream", client: brief);
        Assert.Equal("expired", await Eventually.FirstAsync(expiring.Others, _ => true));
    }

    [Fact]
    public async Task The_stream_of_every_patient_sends_every_alert_of_many_patients_raised_at_once_in_order()
    {
        const int Patients = 40;
        await using var server = await TelemetryServer.StartNewAsync();
        const string Rules = """{"rules":[{"id":"hr-high","type":"threshold","kind":"heart_rate","direction":"above","level":120,"clearLevel":110,"priority":"high"}]}""";
        var watches = new List<MQTTnet.IMqttClient>();
        for (var i = 0; i < Patients; i++)
        {
            var token = await server.ProvisionAsync($"burst-watch-{i}", $"p-burst-{i}");
            await PutRulesAsync(server, $"p-burst-{i}", Rules);
            watches.Add(await Devices.ConnectMqttAsync(server, $"burst-watch-{i}", token));
        }

        await using var dashboard = await AlertStreamClient.OpenAsync(server, "/api/alerts/stream");

        // Their alerts are stored together and handed on by each patient's grain as it resumes, in any order.
        var now = DateTimeOffset.UtcNow;
        await Task.WhenAll(watches.Select((watch, i) => Devices.PublishAsync(watch, $"devices/burst-watch-{i}/vitals", Devices.JsonHeartRates(1, now, 140))));
        await Eventually.ReadAsync(() => Task.FromResult(dashboard.Received.Count), count => count >= Patients);

        var received = dashboard.Received.ToList();
        Assert.Equal(Patients, received.Select(e => e.Alert.Json.GetProperty("patientId").GetString()).Distinct().Count());
        Assert.Equal(received.Select(e => e.Id).Order(), received.Select(e => e.Id));
        foreach (var watch in watches)
        {
            watch.Dispose();
        }
    }

    [Fact]
    public async Task A_restart_keeps_the_open_episode_and_its_escalation()
    {
        await using var server = await TelemetryServer.StartNewAsync();
        var token = await server.ProvisionAsync("restart-watch", "p-restart");
        await PutRulesAsync(server, "p-restart", """
            {"rules":[{"id":"spo2-low","type":"threshold","kind":"spo2","direction":"below","level":90,"clearLevel":92,
                       "priority":"high","escalateAfterSeconds":6}]}
            """);
        using (var watch = await Devices.ConnectMqttAsync(server, "restart-watch", token))
        {
            var payload = Encoding.UTF8.GetBytes($$"""{"seq":1,"readings":[{"kind":"spo2","time":"{{DateTimeOffset.UtcNow:O}}","value":86}]}""");
            Assert.Equal(MqttClientPublishReasonCode.Success, (await Devices.PublishAsync(watch, "devices/restart-watch/vitals", payload)).ReasonCode);
        }

        var open = await Eventually.FirstAsync(OpenAlerts(server), _ => true);
        var alertId = open.GetProperty("alertId").GetString()!;
        Assert.Equal(0, open.GetProperty("escalationLevel").GetInt32());

        await server.KillAsync();
        await server.StartAsync();

        // No reading arrives after the restart: the escalation fires from the persisted state alone.
        var escalated = await Eventually.FirstAsync(OpenAlerts(server), alert => alert.GetProperty("escalationLevel").GetInt32() >= 1, seconds: 30);
        Assert.Equal(alertId, escalated.GetProperty("alertId").GetString());
        Assert.Equal("active", escalated.GetProperty("status").GetString());
        var history = await server.Http.GetFromJsonAsync<JsonElement>("/api/patients/p-restart/alerts");
        Assert.Single(history.EnumerateArray());
        var rules = await server.Http.GetFromJsonAsync<JsonElement>("/api/patients/p-restart/alert-rules");
        Assert.Equal("spo2-low", rules.GetProperty("rules")[0].GetProperty("id").GetString());
    }

    [Fact]
    public async Task A_server_stopped_and_started_again_does_not_hand_on_the_alert_events_it_handed_on_before()
    {
        await using var server = await TelemetryServer.StartNewAsync();
        var token = await server.ProvisionAsync("stop-watch", "p-stop");
        await PutRulesAsync(server, "p-stop", """
            {"rules":[{"id":"spo2-low","type":"threshold","kind":"spo2","direction":"below","level":90,"clearLevel":92,"priority":"high"}]}
            """);
        using (var watch = await Devices.ConnectMqttAsync(server, "stop-watch", token))
        {
            var payload = Encoding.UTF8.GetBytes($$"""{"seq":1,"readings":[{"kind":"spo2","time":"{{DateTimeOffset.UtcNow:O}}","value":86}]}""");
            Assert.Equal(MqttClientPublishReasonCode.Success, (await Devices.PublishAsync(watch, "devices/stop-watch/vitals", payload)).ReasonCode);
        }

        // The raised event is handed on (and counted) a moment after the open alert is stored.
        Assert.Equal(1, await Eventually.ReadAsync(() => AlertEventsHandedOnAsync(server), handedOn => handedOn > 0));

        // A dashboard's streams open as it stops end as it begins to: they do not hold the shutdown until its timeout
        // (30 s here), which would leave the grains and the stores none of it.
        await using (var alerts = await AlertStreamClient.OpenAsync(server, "/api/alerts/stream"))
        await using (var vitals = await AlertStreamClient.OpenAsync(server, "/api/live/stream"))
        {
            Assert.Equal(0, await server.TerminateAsync(TimeSpan.FromSeconds(20)));
        }

        Assert.DoesNotContain("were not written as the server stopped", server.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("shutdown timeout ended the wait", server.Output, StringComparison.Ordinal);
        await server.StartAsync();

        // The start activates the patient (it has rules); a call to its grain answers once the activation is done. By
        // then an activation that found the raised event still in the written state would have handed it on again.
        using var live = await server.Http.GetAsync("/api/patients/p-stop/live");
        Assert.Equal(HttpStatusCode.OK, live.StatusCode);
        Assert.Equal(0, await AlertEventsHandedOnAsync(server));
        Assert.Equal("spo2-low", Assert.Single(OpenAlerts(server)).GetProperty("ruleId").GetString());
    }

    [Fact]
    public async Task The_open_list_puts_the_most_urgent_first_before_it_takes_its_limit()
    {
        await using var server = await TelemetryServer.StartNewAsync();
        var token = await server.ProvisionAsync("urgent-watch", "p-urgent");
        await PutRulesAsync(server, "p-urgent", """
            {"rules":[{"id":"spo2-low","type":"threshold","kind":"spo2","direction":"below","level":90,"clearLevel":92,"priority":"high"},
                      {"id":"hr-high","type":"threshold","kind":"heart_rate","direction":"above","level":120,"clearLevel":110,"priority":"low"}]}
            """);

        // A stream resumed from a position the store has not reached (restored from a backup) is told to read anew, and
        // goes on from now rather than taking every event for one it had sent.
        await using var resumed = await AlertStreamClient.OpenAsync(server, "/api/alerts/stream", lastEventId: 1_000_000);

        // The high-priority alert first, the low one after it: the newest by time is the low one.
        using (var watch = await Devices.ConnectMqttAsync(server, "urgent-watch", token))
        {
            var spo2 = Encoding.UTF8.GetBytes($$"""{"seq":1,"readings":[{"kind":"spo2","time":"{{DateTimeOffset.UtcNow.AddSeconds(-2):O}}","value":86}]}""");
            Assert.Equal(MqttClientPublishReasonCode.Success, (await Devices.PublishAsync(watch, "devices/urgent-watch/vitals", spo2)).ReasonCode);
            await Eventually.ReadAsync(() => Task.FromResult(OpenAlerts(server).Count()), count => count == 1);
            var heart = Encoding.UTF8.GetBytes($$"""{"seq":2,"readings":[{"kind":"heart_rate","time":"{{DateTimeOffset.UtcNow:O}}","value":130}]}""");
            Assert.Equal(MqttClientPublishReasonCode.Success, (await Devices.PublishAsync(watch, "devices/urgent-watch/vitals", heart)).ReasonCode);
            await Eventually.ReadAsync(() => Task.FromResult(OpenAlerts(server).Count()), count => count == 2);
        }

        var first = Assert.Single((await server.Http.GetFromJsonAsync<JsonElement>("/api/alerts?status=open&limit=1")).EnumerateArray());
        Assert.Equal(("spo2-low", "high"), (first.GetProperty("ruleId").GetString(), first.GetProperty("priority").GetString()));

        // The next page starts after the last alert of the one before, in the list's own order; so does a patient's history.
        var next = Assert.Single((await server.Http.GetFromJsonAsync<JsonElement>($"/api/alerts?status=open&limit=1&after={first.GetProperty("alertId").GetString()}")).EnumerateArray());
        Assert.Equal("hr-high", next.GetProperty("ruleId").GetString());
        Assert.Empty((await server.Http.GetFromJsonAsync<JsonElement>($"/api/alerts?status=open&limit=1&after={next.GetProperty("alertId").GetString()}")).EnumerateArray());
        var newest = Assert.Single((await server.Http.GetFromJsonAsync<JsonElement>("/api/patients/p-urgent/alerts?limit=1")).EnumerateArray());
        var older = Assert.Single((await server.Http.GetFromJsonAsync<JsonElement>($"/api/patients/p-urgent/alerts?limit=1&after={newest.GetProperty("alertId").GetString()}")).EnumerateArray());
        Assert.Equal(("hr-high", "spo2-low"), (newest.GetProperty("ruleId").GetString(), older.GetProperty("ruleId").GetString()));

        await Eventually.ReadAsync(() => Task.FromResult(resumed.Received.Count), count => count >= 2);
        Assert.Equal(["reset"], resumed.Others);
        Assert.Equal(["spo2-low", "hr-high"], resumed.Received.Select(item => item.Alert.Json.GetProperty("alert").GetProperty("ruleId").GetString()));
    }

    /// <summary>Alert events this server process stored and handed on, from <c>/metrics</c>.</summary>
    private static async Task<long> AlertEventsHandedOnAsync(TelemetryServer server) =>
        AlertEvents().Matches(await server.Http.GetStringAsync("/metrics")).Sum(match => long.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture));

    [GeneratedRegex(@"^telemetry_alerts_events_total\S*\s+(\d+)", RegexOptions.Multiline)]
    private static partial Regex AlertEvents();

    /// <summary>The alert events timed by <c>telemetry_alerts_delay_seconds</c> (each type its series), and their delays' sum.</summary>
    private static (long Count, double Seconds) AlertDelays(string metrics) => (
        AlertDelayCount().Matches(metrics).Sum(match => long.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture)),
        AlertDelaySum().Matches(metrics).Sum(match => double.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture)));

    [GeneratedRegex(@"^telemetry_alerts_delay_seconds_count\S*\s+(\d+)", RegexOptions.Multiline)]
    private static partial Regex AlertDelayCount();

    [GeneratedRegex(@"^telemetry_alerts_delay_seconds_sum\S*\s+(\S+)", RegexOptions.Multiline)]
    private static partial Regex AlertDelaySum();

    [Fact]
    public async Task Rules_are_validated_templates_apply_and_replay_shows_what_history_would_have_raised()
    {
        await using var server = await TelemetryServer.StartNewAsync();

        using var invalid = await server.Http.PutAsync("/api/patients/p-rules/alert-rules", Json("""
            {"rules":[{"id":"hr-high","type":"threshold","kind":"heart_rate","direction":"above","level":120,"clearLevel":130,"priority":"high"},
                      {"id":"hr-high","type":"no_data","priority":"high"}]}
            """));
        Assert.Equal(HttpStatusCode.BadRequest, invalid.StatusCode);
        Assert.Equal("application/problem+json", invalid.Content.Headers.ContentType?.MediaType);
        var errors = JsonDocument.Parse(await invalid.Content.ReadAsStringAsync()).RootElement.GetProperty("errors");
        Assert.True(errors.TryGetProperty("rules[0].clearLevel", out _));
        Assert.True(errors.TryGetProperty("rules[1].id", out _));
        Assert.True(errors.TryGetProperty("rules[1].silenceSeconds", out _));
        Assert.True(errors.TryGetProperty("rules[1].priority", out _));

        using var unknownKind = await server.Http.PutAsync("/api/patients/p-rules/alert-rules", Json("""{"rules":[{"id":"x","type":"threshold","kind":"mood"}]}"""));
        Assert.Equal(HttpStatusCode.BadRequest, unknownKind.StatusCode);
        Assert.Contains("Not a vital of the catalogue", await unknownKind.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        await PutRulesAsync(server, "p-rules", """{"template":"adult-default"}""");
        var rules = await server.Http.GetFromJsonAsync<JsonElement>("/api/patients/p-rules/alert-rules");
        Assert.Equal("adult-default", rules.GetProperty("template").GetString());
        Assert.Contains(rules.GetProperty("rules").EnumerateArray(), rule => rule.GetProperty("type").GetString() == "early_warning");

        // A night of stored SpO2 with one dip, uploaded afterwards: replay finds it; the live rules raised nothing for it.
        var token = await server.ProvisionAsync("rules-ring", "p-rules");
        var start = Devices.RecentMinute(180);
        var readings = string.Join(",", Enumerable.Range(0, 120).Select(minute =>
            $$"""{"kind":"spo2","time":"{{start.AddMinutes(minute).ToString("O", CultureInfo.InvariantCulture)}}","value":{{(minute is >= 30 and < 40 ? 87 : 96)}}}"""));
        using var upload = new HttpRequestMessage(HttpMethod.Post, "/api/devices/rules-ring/readings") { Content = Json($$"""{"seq":1,"readings":[{{readings}}]}""") };
        upload.Headers.Authorization = new("Bearer", token);
        using var uploaded = await server.Http.SendAsync(upload);
        Assert.Equal(HttpStatusCode.OK, uploaded.StatusCode);

        using var replay = await server.Http.PostAsync("/api/patients/p-rules/alert-rules/replay", Json($$"""
            {"template":"adult-default","from":"{{start.AddMinutes(-1):O}}","to":"{{start.AddMinutes(121):O}}"}
            """));
        var result = JsonDocument.Parse(await replay.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal(HttpStatusCode.OK, replay.StatusCode);
        Assert.Equal(120, result.GetProperty("readings").GetInt32());
        var dip = Assert.Single(result.GetProperty("alerts").EnumerateArray(), alert => alert.GetProperty("ruleId").GetString() == "spo2-low");
        Assert.Equal(start.AddMinutes(31), dip.GetProperty("triggeredAt").GetDateTimeOffset());
        Assert.Equal("cleared", dip.GetProperty("status").GetString());
        Assert.Empty((await server.Http.GetFromJsonAsync<JsonElement>("/api/patients/p-rules/alerts")).EnumerateArray());

        // A replay reads raw readings, so over 7 days at most, as any read of them.
        using var tooLong = await server.Http.PostAsync("/api/patients/p-rules/alert-rules/replay", Json($$"""
            {"template":"adult-default","from":"{{start.AddDays(-8):O}}","to":"{{start:O}}"}
            """));
        Assert.Equal(HttpStatusCode.BadRequest, tooLong.StatusCode);
        Assert.Contains("at most 7 days", await tooLong.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_implausible_reading_over_MQTT_raises_a_sensor_alert()
    {
        // The quarantined reading's way to its patient's grain: the commit names it as kept, and the grain judges it.
        await using var server = await TelemetryServer.StartNewAsync(new Dictionary<string, string>());
        var token = await server.ProvisionAsync("implausible-watch", "p-implausible");
        await PutRulesAsync(server, "p-implausible", """{"rules":[{"id":"sensor","type":"implausible","kind":"heart_rate","priority":"low"}]}""");
        using var watch = await Devices.ConnectMqttAsync(server, "implausible-watch", token);
        var alerts = await Eventually.SubscribeAsync(watch, "patients/p-implausible/alerts");

        await Devices.PublishAsync(watch, "devices/implausible-watch/vitals", Devices.JsonHeartRates(1, DateTimeOffset.UtcNow, 61, 400));

        var raised = await Eventually.FirstAsync(alerts, a => a.Type == "raised");
        Assert.Equal("sensor", raised.Json.GetProperty("alert").GetProperty("ruleId").GetString());
        Assert.Contains("implausible", raised.Json.GetProperty("alert").GetProperty("message").GetString(), StringComparison.Ordinal);
    }

    private static async Task PutRulesAsync(TelemetryServer server, string patientId, string json)
    {
        using var response = await server.Http.PutAsync($"/api/patients/{patientId}/alert-rules", Json(json));
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"PUT alert-rules answered {response.StatusCode}: {body}");
    }

    /// <summary>The open alerts, read again each time the sequence is enumerated.</summary>
    private static IEnumerable<JsonElement> OpenAlerts(TelemetryServer server)
    {
        foreach (var alert in server.Http.GetFromJsonAsync<JsonElement>("/api/alerts?status=open").GetAwaiter().GetResult().EnumerateArray())
        {
            yield return alert;
        }
    }

    private static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");
}
