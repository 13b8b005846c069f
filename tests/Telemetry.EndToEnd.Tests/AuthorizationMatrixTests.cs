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
        ("GET", "/api/patients/{p}/live/stream", 'R'),
        ("GET", "/api/patients/{p}/alerts/stream", 'R'),
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
    public async Task A_token_scoped_to_one_patient_reaches_only_that_patient_on_the_rest_api_too()
    {
        // A clinician's SMART launch for one patient of their ward: the ward's other patients are out of its reach,
        // by the REST API as by FHIR; the same clinician's token without scopes reaches the whole ward.
        using var team = await Server.Http.PutAsJsonAsync("/api/care-teams/mx-ward-5", new { patients = new[] { "mx-p5", "mx-p6" } });
        using var launched = Server.ClientWith(await Server.MintTokenAsync("--role", "clinician", "--care-team", "mx-ward-5", "--patient", "mx-p5", "--scope", "launch patient/Observation.rs"));
        using var unscoped = Server.ClientWith(await Server.MintTokenAsync("--role", "clinician", "--care-team", "mx-ward-5"));

        Assert.Equal(HttpStatusCode.OK, (await launched.GetAsync("/api/patients/mx-p5/trends?kind=heart_rate")).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await launched.GetAsync("/api/patients/mx-p6/trends?kind=heart_rate")).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await launched.GetAsync("/api/patients/mx-p6/export.csv?kind=heart_rate")).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await launched.GetAsync("/fhir/Observation?patient=mx-p6&code=8867-4")).StatusCode);
        Assert.Equal(["mx-p5"], await ListedPatientsAsync(launched));
        Assert.Equal(HttpStatusCode.OK, (await unscoped.GetAsync("/api/patients/mx-p6/trends?kind=heart_rate")).StatusCode);

        // Whatever the resource its patient scopes name; and a patient out of reach is refused as such, arguments or not.
        using var patientResource = Server.ClientWith(await Server.MintTokenAsync("--role", "clinician", "--care-team", "mx-ward-5", "--patient", "mx-p5", "--scope", "launch patient/Patient.rs"));
        Assert.Equal(HttpStatusCode.Forbidden, (await patientResource.GetAsync("/api/patients/mx-p6/trends?kind=heart_rate")).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await launched.GetAsync("/api/patients/mx-p6/trends?kind=heart_rate&from=yesterday")).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await launched.GetAsync("/fhir/Observation?patient=mx-p6&code=8867-4&date=yesterday")).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await launched.GetAsync("/fhir/Observation/$lastn?patient=mx-p6&code=8867-4&max=-1")).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await launched.GetAsync("/fhir/Observation/$lastn?patient=mx-p6")).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await launched.GetAsync("/fhir/Observation?patient=mx-p6&code:not=8867-4")).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await launched.GetAsync("/fhir/Observation/$stats?subject=Patient/mx-p6&code:text=pulse&duration=1")).StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, (await launched.GetAsync("/api/patients/mx-p5/trends?kind=heart_rate&from=yesterday")).StatusCode);

        // Read scopes read, and no more: its own patient's alert rules are not its to change; a write scope may.
        var rules = new StringContent("""{"rules":[]}""", Encoding.UTF8, "application/json");
        Assert.Equal(HttpStatusCode.Forbidden, (await launched.PutAsync("/api/patients/mx-p5/alert-rules", rules)).StatusCode);
        using var writer = Server.ClientWith(await Server.MintTokenAsync("--role", "clinician", "--care-team", "mx-ward-5", "--patient", "mx-p5", "--scope", "patient/Observation.rs patient/Observation.cu"));
        Assert.Equal(HttpStatusCode.OK, (await writer.PutAsync("/api/patients/mx-p5/alert-rules", new StringContent("""{"rules":[]}""", Encoding.UTF8, "application/json"))).StatusCode);
    }

    [Fact]
    public async Task A_token_that_carries_SMART_scopes_does_what_they_grant_and_no_more()
    {
        // A clinician's app given read scopes reads the ward's records and acts on none of them; a write scope acts.
        using var team = await Server.Http.PutAsJsonAsync("/api/care-teams/mx-ward-7", new { patients = new[] { "mx-p7", "mx-p8" } });
        using var reader = Server.ClientWith(await Server.MintTokenAsync("--role", "clinician", "--care-team", "mx-ward-7", "--scope", "user/Observation.rs"));
        using var writer = Server.ClientWith(await Server.MintTokenAsync("--role", "clinician", "--care-team", "mx-ward-7", "--scope", "user/Observation.rs user/Observation.cu"));
        Assert.Equal(HttpStatusCode.OK, (await reader.GetAsync("/api/patients/mx-p7/alert-rules")).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await reader.PutAsync("/api/patients/mx-p7/alert-rules", NoRules())).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await reader.PostAsJsonAsync("/api/alerts/mx-p7~1/ack", new { })).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await writer.PutAsync("/api/patients/mx-p7/alert-rules", NoRules())).StatusCode);

        // Write scopes alone do not act either: an acknowledgement, a snooze or a replay answers with what it read.
        using var writeOnly = Server.ClientWith(await Server.MintTokenAsync("--role", "clinician", "--care-team", "mx-ward-7", "--scope", "user/Observation.cu"));
        Assert.Equal(HttpStatusCode.Forbidden, (await writeOnly.PostAsync("/api/patients/mx-p7/alert-rules/replay", NoRules())).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await writeOnly.PostAsJsonAsync("/api/alerts/mx-p7~1/ack", new { })).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await writeOnly.PutAsync("/api/patients/mx-p7/alert-rules", NoRules())).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await writer.PostAsync("/api/patients/mx-p7/alert-rules/replay", NoRules())).StatusCode);

        // Nor with reading scopes narrowed to one category, which read nothing through the REST API, beside them.
        using var narrowWriter = Server.ClientWith(await Server.MintTokenAsync("--role", "clinician", "--care-team", "mx-ward-7", "--scope",
            "user/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs user/Observation.cu"));
        Assert.Equal(HttpStatusCode.Forbidden, (await narrowWriter.PostAsJsonAsync("/api/alerts/mx-p7~1/ack", new { })).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await narrowWriter.PutAsync("/api/patients/mx-p7/alert-rules", NoRules())).StatusCode);

        // A write scope in a patient's context acts on that patient only, whatever else the token reads.
        using var launchWriter = Server.ClientWith(await Server.MintTokenAsync("--role", "clinician", "--care-team", "mx-ward-7", "--patient", "mx-p7", "--scope", "user/Observation.rs patient/Observation.cu"));
        Assert.Equal(HttpStatusCode.OK, (await launchWriter.PutAsync("/api/patients/mx-p7/alert-rules", NoRules())).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await launchWriter.PutAsync("/api/patients/mx-p8/alert-rules", NoRules())).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await launchWriter.GetAsync("/api/patients/mx-p8/alert-rules")).StatusCode);

        // Scopes of another resource read no Observations: not the ward's trends over REST, no more than over FHIR.
        using var otherResource = Server.ClientWith(await Server.MintTokenAsync("--role", "clinician", "--care-team", "mx-ward-7", "--scope", "user/Patient.rs"));
        Assert.Equal(HttpStatusCode.Forbidden, (await otherResource.GetAsync("/api/patients/mx-p7/trends?kind=heart_rate")).StatusCode);
        Assert.Empty(await ListedPatientsAsync(otherResource));

        // An admin's: the administration, no FHIR resource, needs a scope that writes every resource; scopes that are not
        // SMART's (openid, profile) leave it to the role.
        using var adminReader = Server.ClientWith(await Server.MintTokenAsync("--role", "admin", "--scope", "user/Observation.rs"));
        using var adminAll = Server.ClientWith(await Server.MintTokenAsync("--role", "admin", "--scope", "user/*.*"));
        using var adminPlain = Server.ClientWith(await Server.MintTokenAsync("--role", "admin", "--scope", "openid profile"));
        Assert.Equal(HttpStatusCode.Forbidden, (await adminReader.GetAsync("/api/audit")).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await adminReader.GetAsync("/api/care-teams/mx-ward-7")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await adminReader.GetAsync("/api/patients/mx-p7/alert-rules")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await adminAll.GetAsync("/api/audit")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await adminPlain.GetAsync("/api/care-teams/mx-ward-7")).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await adminReader.GetAsync("/fhir/AuditEvent?_count=1")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await adminAll.GetAsync("/fhir/AuditEvent?_count=1")).StatusCode);

        // The audit log on FHIR as on REST: a scope that writes every resource reaches it, without one that reads
        // Observations; it reaches no Observation.
        using var adminAdministers = Server.ClientWith(await Server.MintTokenAsync("--role", "admin", "--scope", "user/*.cud"));
        Assert.Equal(HttpStatusCode.OK, (await adminAdministers.GetAsync("/api/audit")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await adminAdministers.GetAsync("/fhir/AuditEvent?_count=1")).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await adminAdministers.GetAsync("/fhir/Observation?patient=mx-p7&code=8867-4")).StatusCode);

        // An admin's SMART app launched for one patient reads that patient only, on FHIR as on REST.
        using var adminLaunch = Server.ClientWith(await Server.MintTokenAsync("--role", "admin", "--patient", "mx-p7", "--scope", "launch patient/Observation.rs"));
        Assert.Equal(HttpStatusCode.OK, (await adminLaunch.GetAsync("/fhir/Observation?patient=mx-p7&code=8867-4")).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await adminLaunch.GetAsync("/fhir/Observation?patient=mx-p8&code=8867-4")).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await adminLaunch.GetAsync("/api/patients/mx-p8/trends?kind=heart_rate")).StatusCode);
        using var adminOtherResource = Server.ClientWith(await Server.MintTokenAsync("--role", "admin", "--scope", "user/Patient.rs"));
        Assert.Equal(HttpStatusCode.Forbidden, (await adminOtherResource.GetAsync("/fhir/Observation?patient=mx-p8&code=8867-4")).StatusCode);

        static StringContent NoRules() => new("""{"rules":[]}""", Encoding.UTF8, "application/json");
    }

    [Fact]
    public async Task Lists_across_patients_hold_only_the_patients_a_caller_may_read()
    {
        var deviceToken = await Server.ProvisionAsync("mx-watch-3", "mx-p3");
        using var rules = await Server.Http.PutAsync("/api/patients/mx-p3/alert-rules", new StringContent(Rules, Encoding.UTF8, "application/json"));
        using var watch = await Devices.ConnectMqttAsync(Server, "mx-watch-3", deviceToken);
        await Devices.PublishAsync(watch, "devices/mx-watch-3/vitals", Devices.JsonHeartRates(1, DateTimeOffset.UtcNow, 150));
        using var team = await Server.Http.PutAsJsonAsync("/api/care-teams/mx-ward-3", new { patients = new[] { "mx-p3" } });
        using var ownTeam = Server.ClientWith(await Server.MintTokenAsync("--role", "clinician", "--care-team", "mx-ward-3", "--sub", "mx-dr-3"));
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

        // The patient list of the dashboard: the same patients, each listed one recorded in the audit log.
        Assert.Contains("mx-p3", await ListedPatientsAsync(Server.Http));
        Assert.Equal(["mx-p3"], await ListedPatientsAsync(ownTeam));
        Assert.Equal(["mx-p3"], await ListedPatientsAsync(patient));
        Assert.Empty(await ListedPatientsAsync(otherTeam));
        Assert.Equal(["mx-p4"], await ListedPatientsAsync(otherPatient));
        var audited = await Server.Http.GetFromJsonAsync<System.Text.Json.JsonElement>("/api/audit?actor=mx-dr-3&patientId=mx-p3");
        var actions = audited.EnumerateArray().Select(record => record.GetProperty("action").GetString()!).ToList();
        Assert.Contains("GET /api/patients", actions);
        Assert.Contains(actions, action => action.StartsWith("GET /api/alerts?status=open", StringComparison.Ordinal));
    }

    [Fact]
    public async Task The_live_stream_sends_a_readable_patients_latest_vitals()
    {
        var deviceToken = await Server.ProvisionAsync("mx-watch-5", "mx-p5");
        using var watch = await Devices.ConnectMqttAsync(Server, "mx-watch-5", deviceToken);
        await Devices.PublishAsync(watch, "devices/mx-watch-5/vitals", Devices.JsonHeartRates(1, DateTimeOffset.UtcNow.AddSeconds(-2), 77));
        using var team = await Server.Http.PutAsJsonAsync("/api/care-teams/mx-ward-5", new { patients = new[] { "mx-p5" } });
        using var clinician = Server.ClientWith(await Server.MintTokenAsync("--role", "clinician", "--care-team", "mx-ward-5"));

        using var response = await clinician.GetAsync("/api/live/stream", HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        string? data = null;
        while (data is null || !data.Contains("\"value\":77", StringComparison.Ordinal))
        {
            var line = await reader.ReadLineAsync(timeout.Token) ?? throw new EndOfStreamException("the stream ended");
            data = line.StartsWith("data: ", StringComparison.Ordinal) ? line[6..] : data;
        }

        var view = System.Text.Json.JsonDocument.Parse(data).RootElement;
        Assert.Equal("mx-p5", view.GetProperty("patientId").GetString());
        Assert.Equal("heart_rate", view.GetProperty("vitals")[0].GetProperty("kind").GetString());
    }

    private static async Task<List<string>> OpenPatientsAsync(HttpClient client)
    {
        var alerts = await client.GetFromJsonAsync<System.Text.Json.JsonElement>("/api/alerts?status=open");
        return [.. alerts.EnumerateArray().Select(alert => alert.GetProperty("patientId").GetString()!).Distinct()];
    }

    private static async Task<List<string>> ListedPatientsAsync(HttpClient client)
    {
        var list = await client.GetFromJsonAsync<System.Text.Json.JsonElement>("/api/patients");
        return [.. list.GetProperty("patients").EnumerateArray().Select(patient => patient.GetProperty("patientId").GetString()!)];
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

        // Headers only: a stream that was let through answers 200 at once and never ends.
        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        return response.StatusCode;
    }
}
