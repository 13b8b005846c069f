using System.Globalization;
using System.Net.Http.Headers;
using System.Text;

namespace Telemetry.EndToEnd.Tests;

/// <summary>
/// A server for the browser tests: a care team (ward-web) with four patients, the last hour and two days of heart
/// rate, a high heart-rate alert raised for p-web-1 (trends) and p-web-3 (acknowledged by a scenario), a week of
/// steps, resting heart rate, sleep and weight for p-web-2, p-web-4 (with the same heart-rate rule, no alert) for the live scenario's new reading and alert, and a patient
/// outside the team (p-web-other). Tokens for a clinician of the team and for p-web-2.
/// </summary>
public sealed class BrowserFixture : IAsyncLifetime
{
    public TelemetryServer Server { get; private set; } = null!;

    public string ClinicianToken { get; private set; } = null!;

    /// <summary>A clinician of the same ward whose token's SMART scopes only read.</summary>
    public string ReaderToken { get; private set; } = null!;

    public string PatientToken { get; private set; } = null!;

    /// <summary>The token of web-live, p-web-4's device, for the scenario that sends a new reading.</summary>
    public string DeviceToken { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        // Streams ask again every 2 s whom their reader may see (30 s by default): a scenario changes a care team.
        Server = await TelemetryServer.StartNewAsync(new Dictionary<string, string> { ["Telemetry__Auth__StreamAccessCheckSeconds"] = "2" });
        var now = DateTimeOffset.UtcNow;
        var watchToken = await Server.ProvisionAsync("web-watch", "p-web-1");
        DeviceToken = await Server.ProvisionAsync("web-live", "p-web-4");
        var progressToken = await Server.ProvisionAsync("web-scale", "p-web-2");
        var alertToken = await Server.ProvisionAsync("web-band", "p-web-3");
        await Server.ProvisionAsync("web-other", "p-web-other");
        (await Server.Http.PutAsync("/api/care-teams/ward-web", Json("""{"patients":["p-web-1","p-web-2","p-web-3","p-web-4"]}"""))).EnsureSuccessStatusCode();

        var heartRates = Enumerable.Range(1, 48).Select(hour => ("heart_rate", now.AddHours(-hour), 64.0 + (hour % 7)))
            .Concat(Enumerable.Range(2, 58).Select(minute => ("heart_rate", now.AddMinutes(-minute), 70.0 + (minute % 5))))
            .ToList();
        await UploadAsync("web-watch", watchToken, heartRates);
        await UploadAsync("web-band", alertToken, heartRates);
        await UploadAsync("web-live", DeviceToken, heartRates);
        var week = Enumerable.Range(0, 7).SelectMany(day =>
        {
            var morning = now.Date.AddDays(-day).AddHours(7);
            var at = new DateTimeOffset(morning, TimeSpan.Zero);
            return new[]
            {
                // Today's steps are stamped before now whatever the hour (halfway from midnight), so today always has some.
                ("steps", day == 0 ? now - (now.TimeOfDay / 2) : at.AddHours(3), 6_000.0 + (day * 700)),
                ("resting_heart_rate", at, 58.0 + day),
                ("sleep_duration", at, 6.5 + (day % 3 * 0.5)),
                ("body_weight", at, 80.0 - (day * 0.2)),
            };
        }).Where(reading => reading.Item2 < now).ToList();
        await UploadAsync("web-scale", progressToken, week);

        // p-web-3's alert escalates, unanswered, every second (three times at most) until a scenario acknowledges it.
        foreach (var (patientId, deviceId, token, escalate) in new[] { ("p-web-1", "web-watch", watchToken, ""), ("p-web-3", "web-band", alertToken, ""","escalateAfterSeconds":1""") })
        {
            (await Server.Http.PutAsync($"/api/patients/{patientId}/alert-rules", Json($$"""
                {"rules":[{"id":"hr-high","type":"threshold","kind":"heart_rate","direction":"above","level":120,"priority":"high"{{escalate}}}]}
                """))).EnsureSuccessStatusCode();
            await UploadAsync(deviceId, token, [("heart_rate", DateTimeOffset.UtcNow.AddSeconds(-5), 150)]);
        }

        // p-web-4 has the same rule, and no alert until a scenario raises one.
        (await Server.Http.PutAsync("/api/patients/p-web-4/alert-rules", Json("""
            {"rules":[{"id":"hr-high","type":"threshold","kind":"heart_rate","direction":"above","level":120,"priority":"high"}]}
            """))).EnsureSuccessStatusCode();

        ClinicianToken = await Server.MintTokenAsync("--role", "clinician", "--sub", "dr-web", "--care-team", "ward-web", "--scope", "user/Observation.rs user/Observation.cu");
        ReaderToken = await Server.MintTokenAsync("--role", "clinician", "--sub", "dr-reader", "--care-team", "ward-web", "--scope", "user/Observation.rs");
        PatientToken = await Server.MintTokenAsync("--role", "patient", "--sub", "pat-web", "--patient", "p-web-2", "--scope", "patient/Observation.rs");
        await WaitForAlertsAsync();
    }

    public async Task DisposeAsync() => await Server.DisposeAsync();

    private async Task UploadAsync(string deviceId, string token, IEnumerable<(string Kind, DateTimeOffset Time, double Value)> readings)
    {
        var lines = string.Join('\n', readings.Select(r => string.Create(CultureInfo.InvariantCulture,
            $$"""{"kind":"{{r.Kind}}","time":"{{r.Time.UtcDateTime:yyyy-MM-ddTHH:mm:ss.fffZ}}","value":{{r.Value}}}""")));
        using var request = new HttpRequestMessage(HttpMethod.Post, $"/api/devices/{deviceId}/readings")
        {
            Content = new StringContent(lines, Encoding.UTF8, "application/x-ndjson"),
        };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        using var response = await Server.Http.SendAsync(request);
        Assert.True(response.IsSuccessStatusCode, $"upload for {deviceId} answered {response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
    }

    /// <summary>Both alerts are raised a moment after their readings are committed.</summary>
    private async Task WaitForAlertsAsync()
    {
        var deadline = DateTime.UtcNow.AddSeconds(15);
        while (DateTime.UtcNow < deadline)
        {
            var open = await Server.Http.GetStringAsync("/api/alerts?status=open");
            if (open.Contains("p-web-1~", StringComparison.Ordinal) && open.Contains("p-web-3~", StringComparison.Ordinal))
            {
                return;
            }

            await Task.Delay(200);
        }

        throw new TimeoutException("the seeded alerts were not raised:\n" + Server.Output);
    }

    private static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");
}
