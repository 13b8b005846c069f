using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Telemetry.EndToEnd.Tests;

/// <summary>People's bearer tokens: development JWTs from the server's token command, next to the admin token.</summary>
public sealed class AuthenticationTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private TelemetryServer Server => fixture.Server;

    [Fact]
    public async Task An_admin_JWT_from_the_token_command_works_like_the_admin_token()
    {
        var token = await Server.MintTokenAsync("--role", "admin", "--sub", "ops-1");
        using var admin = Server.ClientWith(token);

        using var provisioned = await admin.PostAsJsonAsync("/api/devices", new { deviceId = "auth-watch-1", patientId = "auth-p-1" });
        using var live = await admin.GetAsync("/api/patients/auth-p-1/live");
        using var fhir = await admin.GetAsync("/fhir/Observation?patient=auth-p-1");

        Assert.Equal(HttpStatusCode.Created, provisioned.StatusCode);
        Assert.Equal(HttpStatusCode.OK, live.StatusCode);
        Assert.Equal(HttpStatusCode.OK, fhir.StatusCode);
    }

    [Fact]
    public async Task A_role_without_the_right_is_forbidden_with_a_problem_or_an_OperationOutcome()
    {
        var token = await Server.MintTokenAsync("--role", "clinician", "--sub", "dr-lee", "--care-team", "ward-3");
        using var clinician = Server.ClientWith(token);

        using var provision = await clinician.PostAsJsonAsync("/api/devices", new { deviceId = "auth-watch-2", patientId = "auth-p-2" });
        using var fhir = await clinician.GetAsync("/fhir/Observation?patient=auth-p-2");

        Assert.Equal(HttpStatusCode.Forbidden, provision.StatusCode);
        Assert.Equal("application/problem+json", provision.Content.Headers.ContentType?.MediaType);
        Assert.Equal(HttpStatusCode.Forbidden, fhir.StatusCode);
        Assert.Contains("\"forbidden\"", await fhir.Content.ReadAsStringAsync());
    }

    [Theory]
    [InlineData("wrong-key")]
    [InlineData("expired")]
    [InlineData("wrong-audience")]
    [InlineData("wrong-issuer")]
    [InlineData("unsigned")]
    [InlineData("no-subject")]
    public async Task A_token_that_does_not_validate_is_refused_with_401(string flaw)
    {
        var key = new SymmetricSecurityKey(Convert.FromBase64String(File.ReadAllText(Path.Combine(Server.DataDirectory, "development-signing-key")).Trim())) { KeyId = "development" };
        var now = DateTime.UtcNow;
        var descriptor = new SecurityTokenDescriptor
        {
            Issuer = flaw == "wrong-issuer" ? "someone-else" : "telemetry-development",
            Audience = flaw == "wrong-audience" ? "another-service" : "telemetry",
            Claims = flaw == "no-subject" ? new Dictionary<string, object> { ["role"] = "admin" } : new Dictionary<string, object> { ["sub"] = "mallory", ["role"] = "admin" },
            IssuedAt = now.AddHours(-3),
            NotBefore = now.AddHours(-3),
            Expires = flaw == "expired" ? now.AddHours(-2) : now.AddHours(1),
            SigningCredentials = flaw switch
            {
                "unsigned" => null,
                "wrong-key" => new SigningCredentials(new SymmetricSecurityKey(RandomNumberGenerator.GetBytes(32)) { KeyId = "development" }, SecurityAlgorithms.HmacSha256),
                _ => new SigningCredentials(key, SecurityAlgorithms.HmacSha256),
            },
        };
        var token = new JsonWebTokenHandler().CreateToken(descriptor);
        using var client = Server.ClientWith(token);

        using var rest = await client.GetAsync("/api/patients/auth-p-3/live");
        using var fhir = await client.GetAsync("/fhir/Observation?patient=auth-p-3");

        Assert.Equal(HttpStatusCode.Unauthorized, rest.StatusCode);
        Assert.Contains(rest.Headers.WwwAuthenticate, header => header.Scheme == "Bearer");
        Assert.Equal(HttpStatusCode.Unauthorized, fhir.StatusCode);
        Assert.DoesNotContain(token, Server.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_person_acknowledges_as_who_their_token_says_whatever_the_body_claims()
    {
        var deviceToken = await Server.ProvisionAsync("auth-watch-ack", "auth-p-ack");
        using var rules = await Server.Http.PutAsync("/api/patients/auth-p-ack/alert-rules", new StringContent(
            """{"rules":[{"id":"hr-high","type":"threshold","kind":"heart_rate","direction":"above","level":120,"priority":"high"}]}""",
            System.Text.Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, rules.StatusCode);
        using var watch = await Devices.ConnectMqttAsync(Server, "auth-watch-ack", deviceToken);
        await Devices.PublishAsync(watch, "devices/auth-watch-ack/vitals", Devices.JsonHeartRates(1, DateTimeOffset.UtcNow, 150));
        var alertId = await OpenAlertAsync("auth-p-ack");
        using var person = Server.ClientWith(await Server.MintTokenAsync("--role", "admin", "--sub", "ops-7"));

        using var acknowledged = await person.PostAsJsonAsync($"/api/alerts/{alertId}/ack", new { by = "someone-else" });

        Assert.Equal(HttpStatusCode.OK, acknowledged.StatusCode);
        Assert.Equal("ops-7", (await acknowledged.Content.ReadFromJsonAsync<System.Text.Json.JsonElement>()).GetProperty("acknowledgedBy").GetString());
    }

    /// <summary>Opens <paramref name="count"/> alert streams as <paramref name="client"/>, each answered 200, into <paramref name="open"/>.</summary>
    private static async Task OpenAlertStreamsAsync(HttpClient client, int count, List<HttpResponseMessage> open)
    {
        for (var i = 0; i < count; i++)
        {
            open.Add(await client.GetAsync("/api/alerts/stream", HttpCompletionOption.ResponseHeadersRead));
            Assert.Equal(HttpStatusCode.OK, open[^1].StatusCode);
        }
    }

    [Fact]
    public async Task A_caller_holds_a_few_alert_streams_at_once_and_another_once_one_closes()
    {
        using var clinician = Server.ClientWith(await Server.MintTokenAsync("--role", "clinician", "--sub", "dr-many-tabs"));
        var open = new List<HttpResponseMessage>();
        try
        {
            await OpenAlertStreamsAsync(clinician, 8, open);

            using (var ninth = await clinician.GetAsync("/api/alerts/stream", HttpCompletionOption.ResponseHeadersRead))
            {
                Assert.Equal(HttpStatusCode.TooManyRequests, ninth.StatusCode);
                Assert.Contains("8 alert streams", await ninth.Content.ReadAsStringAsync(), StringComparison.Ordinal);
            }

            // Live streams are counted apart; a closed alert stream frees its slot once the server sees it go.
            using (var live = await clinician.GetAsync("/api/live/stream", HttpCompletionOption.ResponseHeadersRead))
            {
                Assert.Equal(HttpStatusCode.OK, live.StatusCode);
            }

            // The same subject from another issuer is another caller: a person whose sub is 'admin' holds no slot of
            // the admin token's, nor it of theirs.
            using var namedAdmin = Server.ClientWith(await Server.MintTokenAsync("--role", "admin", "--sub", "admin"));
            var admins = new List<HttpResponseMessage>();
            try
            {
                await OpenAlertStreamsAsync(namedAdmin, 8, admins);

                using var adminToken = await Server.Http.GetAsync("/api/alerts/stream", HttpCompletionOption.ResponseHeadersRead);
                Assert.Equal(HttpStatusCode.OK, adminToken.StatusCode);
            }
            finally
            {
                admins.ForEach(response => response.Dispose());
            }

            open[0].Dispose();
            open.RemoveAt(0);
            var deadline = DateTime.UtcNow.AddSeconds(15);
            HttpStatusCode status;
            do
            {
                await Task.Delay(100);
                var again = await clinician.GetAsync("/api/alerts/stream", HttpCompletionOption.ResponseHeadersRead);
                status = again.StatusCode;
                open.Add(again);
            }
            while (status != HttpStatusCode.OK && DateTime.UtcNow < deadline);

            Assert.Equal(HttpStatusCode.OK, status);
        }
        finally
        {
            open.ForEach(response => response.Dispose());
        }
    }

    [Fact]
    public async Task No_token_or_a_wrong_admin_token_is_refused_with_401()
    {
        using var anonymous = Server.ClientWith(null);
        using var guessing = Server.ClientWith(Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32)));

        Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync("/api/alerts")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await guessing.GetAsync("/api/alerts")).StatusCode);
    }

    [Fact]
    public async Task A_server_told_not_to_accept_development_tokens_refuses_them()
    {
        await using var server = await TelemetryServer.StartNewAsync(new Dictionary<string, string>
        {
            ["Telemetry__Auth__Jwt__AcceptDevelopmentTokens"] = "false",
        });
        var token = await server.MintTokenAsync("--role", "admin");
        using var client = server.ClientWith(token);

        Assert.Equal(HttpStatusCode.Unauthorized, (await client.GetAsync("/api/alerts")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await server.Http.GetAsync("/api/alerts")).StatusCode);
    }

    [Fact]
    public async Task The_token_command_refuses_a_role_it_does_not_know()
    {
        var failure = await Assert.ThrowsAsync<Xunit.Sdk.TrueException>(() => Server.MintTokenAsync("--role", "nurse"));

        Assert.Contains("--role must be admin, clinician or patient", failure.Message);
    }

    [Fact]
    public async Task A_development_token_carries_its_role_patient_and_care_teams()
    {
        var token = new JsonWebToken(await Server.MintTokenAsync("--role", "patient", "--patient", "p-042", "--sub", "alex", "--hours", "2"));

        Assert.Equal("telemetry-development", token.Issuer);
        Assert.Equal("alex", token.Subject);
        Assert.Equal("patient", token.GetClaim("role").Value);
        Assert.Equal("p-042", token.GetClaim("patient").Value);
        Assert.Equal("patient/Observation.rs", token.GetClaim("scope").Value);
        Assert.InRange(token.ValidTo - token.ValidFrom, TimeSpan.FromMinutes(119), TimeSpan.FromMinutes(121));
    }

    private async Task<string> OpenAlertAsync(string patientId)
    {
        for (var deadline = DateTime.UtcNow.AddSeconds(15); DateTime.UtcNow < deadline; await Task.Delay(100))
        {
            var open = await Server.Http.GetFromJsonAsync<System.Text.Json.JsonElement>($"/api/patients/{patientId}/alerts?status=open");
            if (open.GetArrayLength() > 0)
            {
                return open[0].GetProperty("alertId").GetString()!;
            }
        }

        throw new TimeoutException($"no open alert for {patientId}");
    }
}
