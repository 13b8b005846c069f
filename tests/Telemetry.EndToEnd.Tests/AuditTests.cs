using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;

namespace Telemetry.EndToEnd.Tests;

/// <summary>Every read of a patient's record leaves an audit record, and altering a stored record breaks the chain.</summary>
public sealed class AuditTests
{
    [Fact]
    public async Task Each_read_is_recorded_with_who_which_patient_what_and_the_outcome_and_survives_a_kill()
    {
        await using var server = await TelemetryServer.StartNewAsync();
        using var team = await server.Http.PutAsJsonAsync("/api/care-teams/audit-ward", new { patients = new[] { "audit-p1" } });
        using var clinician = server.ClientWith(await server.MintTokenAsync("--role", "clinician", "--sub", "dr-audit", "--care-team", "audit-ward"));

        using var trend = await clinician.GetAsync("/api/patients/audit-p1/trends?kind=heart_rate");
        using var fhir = await clinician.GetAsync("/fhir/Observation?patient=Patient/audit-p1&code=8867-4");
        using var export = await clinician.GetAsync("/api/patients/audit-p1/export.csv?kind=heart_rate");
        using var denied = await clinician.GetAsync("/api/patients/audit-p2/live");
        Assert.Equal(HttpStatusCode.OK, trend.StatusCode);
        Assert.Equal(HttpStatusCode.OK, fhir.StatusCode);
        Assert.Equal(HttpStatusCode.OK, export.StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, denied.StatusCode);

        // Killed at once: what was recorded before each response is still there.
        await server.KillAsync();
        await server.StartAsync();
        var records = (await server.Http.GetFromJsonAsync<JsonElement>("/api/audit?actor=dr-audit")).EnumerateArray().Reverse().ToList();

        Assert.Equal(4, records.Count);
        Assert.All(records, record => Assert.Equal("clinician", record.GetProperty("role").GetString()));
        Assert.Equal(["audit-p1", "audit-p1", "audit-p1", "audit-p2"], records.Select(r => r.GetProperty("patientId").GetString()));
        Assert.Equal(["success", "success", "success", "denied"], records.Select(r => r.GetProperty("outcome").GetString()));
        Assert.Equal([200, 200, 200, 403], records.Select(r => r.GetProperty("status").GetInt32()));
        Assert.StartsWith("GET /api/patients/audit-p1/trends?kind=heart_rate", records[0].GetProperty("action").GetString(), StringComparison.Ordinal);
        Assert.StartsWith("GET /fhir/Observation?", records[1].GetProperty("action").GetString(), StringComparison.Ordinal);
        Assert.True((await server.Http.GetFromJsonAsync<JsonElement>("/api/audit/verify")).GetProperty("intact").GetBoolean());
        Assert.Equal(HttpStatusCode.Forbidden, (await clinician.GetAsync("/api/audit")).StatusCode);

        // A development token minted for the admin role is named "admin" by default, as the admin token is: the audit
        // tells the two apart.
        using var developer = server.ClientWith(await server.MintTokenAsync("--role", "admin"));
        using var developerRead = await developer.GetAsync("/api/patients/audit-p1/trends?kind=spo2");
        Assert.Equal(HttpStatusCode.OK, developerRead.StatusCode);
        var byDeveloper = Assert.Single((await server.Http.GetFromJsonAsync<JsonElement>("/api/audit?actor=dev:admin")).EnumerateArray());
        Assert.StartsWith("GET /api/patients/audit-p1/trends?kind=spo2", byDeveloper.GetProperty("action").GetString(), StringComparison.Ordinal);
        Assert.DoesNotContain((await server.Http.GetFromJsonAsync<JsonElement>("/api/audit?actor=admin")).EnumerateArray(),
            record => record.GetProperty("action").GetString()!.Contains("kind=spo2", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Reads_that_name_their_patient_outside_the_route_and_refused_streams_are_recorded_as_they_were()
    {
        await using var server = await TelemetryServer.StartNewAsync();
        await server.ProvisionAsync("audit-w3", "audit-p3");
        using var team = await server.Http.PutAsJsonAsync("/api/care-teams/audit-ward-3", new { patients = new[] { "audit-p3" } });
        using var clinician = server.ClientWith(await server.MintTokenAsync("--role", "clinician", "--sub", "dr-audit-3", "--care-team", "audit-ward-3"));

        // $stats with its subject in the body; a device's quarantined readings (the patient's); the same patient named
        // twice in a search; a stream of a patient the clinician may not read, and one of a patient they may.
        using var stats = await server.Http.PostAsync("/fhir/Observation/$stats", new StringContent(
            """{"resourceType":"Parameters","parameter":[{"name":"subject","valueReference":{"reference":"Patient/audit-p3"}},{"name":"code","valueString":"8867-4"},{"name":"statistic","valueString":"count"},{"name":"duration","valueDecimal":1}]}""",
            System.Text.Encoding.UTF8,
            "application/fhir+json"));
        using var rejects = await server.Http.GetAsync("/api/devices/audit-w3/rejects");
        using var twice = await server.Http.GetAsync("/fhir/Observation?patient=audit-p3&patient=Patient/audit-p3&code=8867-4");
        using var refused = await clinician.GetAsync("/api/patients/audit-p4/alerts/stream", HttpCompletionOption.ResponseHeadersRead);
        using var opened = await clinician.GetAsync("/api/patients/audit-p3/live/stream", HttpCompletionOption.ResponseHeadersRead);

        // A query parameter outside FHIR's searches names nobody: the alerts listed are the clinician's own patients', and
        // a FHIR path that is no search reads no one.
        using var spoofed = await clinician.GetAsync("/api/alerts?patient=audit-p5");
        using var notASearch = await clinician.GetAsync("/fhir/Patient?patient=audit-p5");
        using var notItsParameter = await clinician.GetAsync("/fhir/AuditEvent?subject=Patient/audit-p5");

        // Refused for their arguments: by the handler (a vital that does not exist), and before it (a number that is not one).
        using var anonymous = server.ClientWith(null);
        using var unsigned = await anonymous.GetAsync("/api/patients/audit-p3/trends?kind=heart_rate");
        using var wrongToken = server.ClientWith("not-a-token-anyone-issued");
        using var refusedToken = await wrongToken.GetAsync("/api/patients/audit-p3/trends?kind=spo2");
        Assert.Equal(HttpStatusCode.Unauthorized, unsigned.StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, refusedToken.StatusCode);
        using var badKind = await clinician.GetAsync("/api/patients/audit-p3/trends?kind=bogus");
        using var unbound = await clinician.GetAsync("/api/patients/audit-p3/daily?stepsGoal=abc");
        Assert.Equal(HttpStatusCode.BadRequest, badKind.StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, unbound.StatusCode);
        Assert.Equal(HttpStatusCode.OK, stats.StatusCode);
        Assert.Equal(HttpStatusCode.OK, rejects.StatusCode);
        Assert.Equal(HttpStatusCode.OK, twice.StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, refused.StatusCode);
        Assert.Equal(HttpStatusCode.OK, opened.StatusCode);
        Assert.Equal(HttpStatusCode.OK, spoofed.StatusCode);
        Assert.Empty((await server.Http.GetFromJsonAsync<JsonElement>("/api/audit?patientId=audit-p5")).EnumerateArray());

        var patient = (await server.Http.GetFromJsonAsync<JsonElement>("/api/audit?patientId=audit-p3")).EnumerateArray()
            .Select(record => (Action: record.GetProperty("action").GetString()!, Status: record.GetProperty("status").GetInt32())).ToList();
        Assert.Contains(("POST /fhir/Observation/$stats", 200), patient);
        Assert.Contains(("GET /api/devices/audit-w3/rejects", 200), patient);
        Assert.Contains(patient, record => record.Action.StartsWith("GET /fhir/Observation?patient=audit-p3&patient=", StringComparison.Ordinal));
        Assert.Contains(("GET /api/patients/audit-p3/live/stream", 200), patient);
        Assert.Contains(("GET /api/patients/audit-p3/trends?kind=bogus", 400), patient);
        Assert.Contains(("GET /api/patients/audit-p3/daily?stepsGoal=abc", 400), patient);
        Assert.Contains(("GET /api/patients/audit-p3/trends?kind=spo2", 401), patient);
        Assert.DoesNotContain(("GET /api/patients/audit-p3/trends?kind=heart_rate", 401), patient);
        var denied = Assert.Single((await server.Http.GetFromJsonAsync<JsonElement>("/api/audit?patientId=audit-p4")).EnumerateArray());
        Assert.Equal(("GET /api/patients/audit-p4/alerts/stream", 403, "denied"), (denied.GetProperty("action").GetString(), denied.GetProperty("status").GetInt32(), denied.GetProperty("outcome").GetString()));

        // Refused before their handler (a token without Observation scopes), FHIR searches still name the patient they
        // asked for: with a trailing slash, the same patient named twice, $stats by its patient parameter.
        using var unscoped = server.ClientWith(await server.MintTokenAsync("--role", "clinician", "--sub", "dr-audit-10", "--scope", "user/Patient.rs"));
        foreach (var path in new[] { "/fhir/Observation/?patient=audit-p10&code=8867-4", "/fhir/Observation?patient=audit-p10&patient=Patient/audit-p10", "/fhir/Observation/$stats?patient=audit-p10&code=8867-4&statistic=count&duration=1" })
        {
            using var response = await unscoped.GetAsync(path);
            Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
        }

        Assert.Equal(3, (await server.Http.GetFromJsonAsync<JsonElement>("/api/audit?actor=dr-audit-10&patientId=audit-p10")).GetArrayLength());

        // Reading a patient's accesses is an access to their record: the admin's look at audit-p4's is recorded.
        var looked = (await server.Http.GetFromJsonAsync<JsonElement>("/api/audit?patientId=audit-p4")).EnumerateArray().First();
        Assert.Equal(("GET /api/audit?patientId=audit-p4", "admin", 200), (looked.GetProperty("action").GetString(), looked.GetProperty("role").GetString(), looked.GetProperty("status").GetInt32()));
    }

    [Fact]
    public async Task Changes_of_who_reaches_a_patient_are_recorded_for_each_patient_given_or_taken_and_each_device_action_for_its_patient()
    {
        await using var server = await TelemetryServer.StartNewAsync();
        using var first = await server.Http.PutAsJsonAsync("/api/care-teams/audit-ward-6", new { patients = new[] { "audit-p6", "audit-p7" } });
        using var second = await server.Http.PutAsJsonAsync("/api/care-teams/audit-ward-6", new { patients = new[] { "audit-p7", "audit-p8" } });
        await server.ProvisionAsync("audit-w9", "audit-p9");
        using var looked = await server.Http.GetAsync("/api/devices/audit-w9");
        using var rotated = await server.Http.PostAsync("/api/devices/audit-w9/token", null);
        using var revoked = await server.Http.DeleteAsync("/api/devices/audit-w9/token");
        Assert.Equal(HttpStatusCode.OK, second.StatusCode);
        Assert.Equal(HttpStatusCode.OK, revoked.StatusCode);

        async Task<List<string>> ActionsAsync(string patientId) =>
            [.. (await server.Http.GetFromJsonAsync<JsonElement>($"/api/audit?patientId={patientId}")).EnumerateArray().Select(r => r.GetProperty("action").GetString()!).Reverse()];

        // Given, then taken away; given and kept (one record); given by the second change.
        Assert.Equal(["PUT /api/care-teams/audit-ward-6", "PUT /api/care-teams/audit-ward-6"], await ActionsAsync("audit-p6"));
        Assert.Equal(["PUT /api/care-teams/audit-ward-6"], await ActionsAsync("audit-p7"));
        Assert.Equal(["PUT /api/care-teams/audit-ward-6"], await ActionsAsync("audit-p8"));
        Assert.Equal(
            ["POST /api/devices", "GET /api/devices/audit-w9", "POST /api/devices/audit-w9/token", "DELETE /api/devices/audit-w9/token"],
            await ActionsAsync("audit-p9"));

        // A body that is not JSON, or none, is an argument refused: answered so, naming what to send, and recorded.
        using var notJson = await server.Http.PostAsync("/api/devices", new StringContent("deviceId=w10", Encoding.UTF8, "application/x-www-form-urlencoded"));
        using var empty = await server.Http.PutAsync("/api/care-teams/audit-ward-6", new StringContent("", Encoding.UTF8, "application/json"));
        foreach (var refused in new[] { notJson, empty })
        {
            Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
            Assert.Equal("application/problem+json", refused.Content.Headers.ContentType?.MediaType);
            Assert.Contains("\"body\"", await refused.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        var latest = (await server.Http.GetFromJsonAsync<JsonElement>("/api/audit?limit=3")).EnumerateArray()
            .Select(r => (r.GetProperty("action").GetString(), r.GetProperty("status").GetInt32(), r.GetProperty("outcome").GetString())).ToList();
        Assert.Contains(("POST /api/devices", 400, "refused"), latest);
        Assert.Contains(("PUT /api/care-teams/audit-ward-6", 400, "refused"), latest);
    }

    [Fact]
    public async Task An_export_is_recorded_as_its_first_bytes_go_out_and_a_client_hanging_up_before_or_after_leaves_the_record()
    {
        await using var server = await TelemetryServer.StartNewAsync();
        var token = await server.ProvisionAsync("audit-w5", "audit-p5");

        // Three days of heart rate at 1 Hz: a CSV of some 15 MB, more than the sockets between hold, so the export is
        // still writing when the client has its headers.
        var start = Devices.RecentMinute(0).AddDays(-3);
        const int Seconds = 3 * 86_400;
        var lines = new StringBuilder(Seconds * 80);
        for (var i = 0; i < Seconds; i++)
        {
            lines.Append(CultureInfo.InvariantCulture, $$"""{"kind":"heart_rate","time":"{{start.AddSeconds(i):O}}","value":{{60 + (i % 40)}}}""").Append('\n');
        }

        using var upload = new HttpRequestMessage(HttpMethod.Post, "/api/devices/audit-w5/readings") { Content = new StringContent(lines.ToString(), Encoding.UTF8, "application/x-ndjson") };
        upload.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        using (var uploaded = await server.Http.SendAsync(upload))
        {
            Assert.Equal(HttpStatusCode.OK, uploaded.StatusCode);
        }

        var range = $"from={Uri.EscapeDataString(start.ToString("O", CultureInfo.InvariantCulture))}&to={Uri.EscapeDataString(start.AddDays(3).ToString("O", CultureInfo.InvariantCulture))}";
        var export = await server.Http.GetAsync($"/api/patients/audit-p5/export.csv?kind=heart_rate&{range}", HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, export.StatusCode);
        var record = Assert.Single((await server.Http.GetFromJsonAsync<JsonElement>("/api/audit?patientId=audit-p5")).EnumerateArray(),
            record => record.GetProperty("action").GetString()!.Contains("/export.csv?", StringComparison.Ordinal));
        Assert.StartsWith("GET /api/patients/audit-p5/export.csv?", record.GetProperty("action").GetString(), StringComparison.Ordinal);
        Assert.Equal(200, record.GetProperty("status").GetInt32());

        // The client hangs up part way: the export ends there, recorded once.
        await using (var body = await export.Content.ReadAsStreamAsync())
        {
            Assert.True(await body.ReadAsync(new byte[64 * 1024]) > 0);
        }

        export.Dispose();
        await Task.Delay(500);
        Assert.Single((await server.Http.GetFromJsonAsync<JsonElement>("/api/audit?patientId=audit-p5")).EnumerateArray(),
            record => record.GetProperty("action").GetString()!.Contains("/export.csv?", StringComparison.Ordinal));

        // A client that hangs up before any answer begins (the export of minute windows writes nothing until it has
        // read them all): the read it asked for is recorded all the same, as abandoned. Its hang-up may come before the
        // server has read the request at all (the reset drops it unread, and nothing is recorded), or, on a busy
        // machine, after the export's answer began (recorded as 200): so it asks again, hanging up a little later each
        // time, until one is recorded as abandoned. On a fast hour the window is under a millisecond: the waits step by
        // 100 µs (spun, as a timer's are too coarse) from nothing to 8 ms, and then over again.
        List<JsonElement> taken = [];
        for (var attempt = 0; attempt < 160 && !taken.Any(IsAbandoned); attempt++)
        {
            using (var socket = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp))
            {
                await socket.ConnectAsync(IPAddress.Loopback, server.HttpPort);
                var request = $"GET /api/patients/audit-p5/export.csv?kind=heart_rate&resolution=1m&{range} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {server.AdminToken}\r\n\r\n";
                await socket.SendAsync(Encoding.ASCII.GetBytes(request));
                var hangUpAt = System.Diagnostics.Stopwatch.GetTimestamp() + (System.Diagnostics.Stopwatch.Frequency * (attempt % 80) * 100 / 1_000_000);
                while (System.Diagnostics.Stopwatch.GetTimestamp() < hangUpAt)
                {
                    Thread.SpinWait(20);
                }

                socket.LingerState = new System.Net.Sockets.LingerOption(true, 0);
            }

            await Task.Delay(100);
            taken = (await server.Http.GetFromJsonAsync<JsonElement>("/api/audit?patientId=audit-p5")).EnumerateArray()
                .Where(r => r.GetProperty("action").GetString()!.Contains("resolution=1m", StringComparison.Ordinal)).ToList();
        }

        Assert.Contains(taken, IsAbandoned);
        Assert.All(taken, record => Assert.Contains(record.GetProperty("status").GetInt32(), new[] { 200, 499 }));

        static bool IsAbandoned(JsonElement record) =>
            (record.GetProperty("status").GetInt32(), record.GetProperty("outcome").GetString()) == (499, "abandoned");
    }

    [Fact]
    public async Task Altering_a_stored_record_breaks_verification_from_that_record()
    {
        await using var server = await TelemetryServer.StartNewAsync();
        for (var i = 0; i < 3; i++)
        {
            using var read = await server.Http.GetAsync($"/api/patients/audit-p{i}/live");
            Assert.Equal(HttpStatusCode.OK, read.StatusCode);
        }

        var before = await server.Http.GetFromJsonAsync<JsonElement>("/api/audit/verify");
        Assert.True(before.GetProperty("intact").GetBoolean());
        Assert.Equal(3, before.GetProperty("records").GetInt64());

        // Someone with access to the file changes whose record the second one is.
        await server.KillAsync();
        var path = Directory.GetFiles(server.DataDirectory, "audit-*.log").Single(file => File.ReadAllText(file).Contains("audit-p1"));
        var lines = await File.ReadAllLinesAsync(path);
        var line = Array.FindIndex(lines, record => record.Contains("audit-p1", StringComparison.Ordinal));
        lines[line] = lines[line].Replace("audit-p1", "audit-p9", StringComparison.Ordinal);
        await File.WriteAllLinesAsync(path, lines);
        await server.StartAsync();

        var after = await server.Http.GetFromJsonAsync<JsonElement>("/api/audit/verify");
        Assert.False(after.GetProperty("intact").GetBoolean());
        Assert.Equal(line + 1, after.GetProperty("firstBrokenLine").GetInt64());
        Assert.Equal(Path.GetFileName(path), after.GetProperty("file").GetString());
    }
}
