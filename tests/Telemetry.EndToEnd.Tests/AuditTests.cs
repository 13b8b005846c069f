using System.Net;
using System.Net.Http.Json;
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
