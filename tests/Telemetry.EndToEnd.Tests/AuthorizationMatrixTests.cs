using System.Net;
using System.Net.Http.Json;
using System.Text;

namespace Telemetry.EndToEnd.Tests;

/// <summary>
/// Every endpoint that reaches a patient's record, for every role, on the caller's own patient and on another:
/// no cross-patient read or action succeeds, and everything a role may do does.
/// </summary>
public sealed class AuthorizationMatrixTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private const string Own = "mx-p1";
    private const string Other = "mx-p2";
    private const string Rules = """{"rules":[{"id":"hr-high","type":"threshold","kind":"heart_rate","direction":"above","level":130,"priority":"high"}]}""";

    private TelemetryServer Server => fixture.Server;

    /// <summary>Who may: R = admins, the patient's care teams and the patient; A = admins and care teams; X = admins.</summary>
    private static readonly (string Method, string Path, char Who)[] Endpoints =
    [
        ("GET", "/api/patients/{p}/trends?kind=heart_rate", 'R'),
        ("GET", "/api/patients/{p}/live", 'R'),
        ("GET", "/api/patients/{p}/daily", 'R'),
        ("GET", "/api/patients/{p}/export.csv?kind=heart_rate", 'R'),
        ("GET", "/api/patients/{p}/alerts", 'R'),
        ("GET", "/api/patients/{p}/alert-rules", 'R'),
        ("PUT", "/api/patients/{p}/alert-rules", 'A'),
        ("GET", "/fhir/Observation?patient=Patient/{p}", 'R'),
        ("GET", "/fhir/Observation/$lastn?patient={p}&category=vital-signs", 'R'),
        ("GET", "/fhir/Observation/$stats?subject=Patient/{p}&code=8867-4&statistic=average&duration=24", 'R'),
        ("GET", "/api/alerts/{p}~1", 'R'),
        ("POST", "/api/alerts/{p}~1/ack", 'A'),
        ("POST", "/api/devices", 'X'),
        ("PUT", "/api/care-teams/mx-other-team", 'X'),
    ];

    [Fact]
    public async Task No_role_reaches_a_patient_it_may_not_and_every_role_reaches_what_it_may()
    {
        using var team = await Server.Http.PutAsJsonAsync("/api/care-teams/mx-ward-1", new { patients = new[] { Own } });
        Assert.Equal(HttpStatusCode.OK, team.StatusCode);
        var callers = new (string Name, string? Token, Func<string, char, bool> May)[]
        {
            ("admin", await Server.MintTokenAsync("--role", "admin"), (_, _) => true),
            ("clinician of the team", await Server.MintTokenAsync("--role", "clinician", "--care-team", "mx-ward-1"), (p, who) => p == Own && who != 'X'),
            ("clinician of another team", await Server.MintTokenAsync("--role", "clinician", "--care-team", "mx-ward-2"), (_, _) => false),
            ("the patient", await Server.MintTokenAsync("--role", "patient", "--patient", Own), (p, who) => p == Own && who == 'R'),
            ("another patient", await Server.MintTokenAsync("--role", "patient", "--patient", Other), (p, who) => p == Other && who == 'R'),
        };

        var wrong = new List<string>();
        foreach (var (name, token, may) in callers)
        {
            using var client = Server.ClientWith(token);
            foreach (var patient in new[] { Own, Other })
            {
                foreach (var (method, path, who) in Endpoints)
                {
                    var status = await SendAsync(client, method, path.Replace("{p}", patient, StringComparison.Ordinal), patient);
                    var allowed = may(patient, who);

                    // Allowed: anything but 401/403 (an alert that does not exist is 404, acking it too). Refused: 403.
                    var right = allowed ? status is not (HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden) && (int)status < 500 : status == HttpStatusCode.Forbidden;
                    if (!right)
                    {
                        wrong.Add($"{name} {method} {path} for {(patient == Own ? "own" : "other")} patient: {(int)status}, expected {(allowed ? "allowed" : "403")}");
                    }
                }
            }
        }

        using var anonymous = Server.ClientWith(null);
        foreach (var (method, path, _) in Endpoints)
        {
            var status = await SendAsync(anonymous, method, path.Replace("{p}", Own, StringComparison.Ordinal), Own);
            if (status != HttpStatusCode.Unauthorized)
            {
                wrong.Add($"anonymous {method} {path}: {(int)status}, expected 401");
            }
        }

        Assert.True(wrong.Count == 0, string.Join('\n', wrong));
    }

    [Fact]
    public async Task Lists_across_patients_hold_only_the_patients_a_caller_may_read()
    {
        var deviceToken = await Server.ProvisionAsync("mx-watch-3", "mx-p3");
        using var rules = await Server.Http.PutAsync("/api/patients/mx-p3/alert-rules", new StringContent(Rules, Encoding.UTF8, "application/json"));
        using var watch = await Devices.ConnectMqttAsync(Server, "mx-watch-3", deviceToken);
        await Devices.PublishAsync(watch, "devices/mx-watch-3/vitals", Devices.JsonHeartRates(1, DateTimeOffset.UtcNow, 150));
        using var team = await Server.Http.PutAsJsonAsync("/api/care-teams/mx-ward-3", new { patients = new[] { "mx-p3" } });
        using var ownTeam = Server.ClientWith(await Server.MintTokenAsync("--role", "clinician", "--care-team", "mx-ward-3"));
        using var otherTeam = Server.ClientWith(await Server.MintTokenAsync("--role", "clinician", "--care-team", "mx-ward-4"));
        using var patient = Server.ClientWith(await Server.MintTokenAsync("--role", "patient", "--patient", "mx-p3"));
        using var otherPatient = Server.ClientWith(await Server.MintTokenAsync("--role", "patient", "--patient", "mx-p4"));

        for (var deadline = DateTime.UtcNow.AddSeconds(15); DateTime.UtcNow < deadline && (await OpenPatientsAsync(Server.Http)).Count == 0;)
        {
            await Task.Delay(100);
        }

        Assert.Contains("mx-p3", await OpenPatientsAsync(Server.Http));
        Assert.Equal(["mx-p3"], await OpenPatientsAsync(ownTeam));
        Assert.Equal(["mx-p3"], await OpenPatientsAsync(patient));
        Assert.Empty(await OpenPatientsAsync(otherTeam));
        Assert.Empty(await OpenPatientsAsync(otherPatient));
    }

    private static async Task<List<string>> OpenPatientsAsync(HttpClient client)
    {
        var alerts = await client.GetFromJsonAsync<System.Text.Json.JsonElement>("/api/alerts?status=open");
        return [.. alerts.EnumerateArray().Select(alert => alert.GetProperty("patientId").GetString()!).Distinct()];
    }

    private static async Task<HttpStatusCode> SendAsync(HttpClient client, string method, string path, string patient)
    {
        using var request = new HttpRequestMessage(new HttpMethod(method), path);
        if (method != "GET")
        {
            var body = path.StartsWith("/api/devices", StringComparison.Ordinal) ? $$"""{"deviceId":"mx-{{Guid.NewGuid():N}}","patientId":"{{patient}}"}"""
                : path.StartsWith("/api/care-teams", StringComparison.Ordinal) ? """{"patients":[]}"""
                : path.EndsWith("/ack", StringComparison.Ordinal) ? "{}"
                : Rules;
            request.Content = new StringContent(body, Encoding.UTF8, "application/json");
        }

        using var response = await client.SendAsync(request);
        return response.StatusCode;
    }
}
