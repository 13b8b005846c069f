using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text.Json;
using Hl7.Fhir.Model;
using Hl7.Fhir.Serialization;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using Task = System.Threading.Tasks.Task;

namespace Telemetry.EndToEnd.Tests;

/// <summary>
/// The server configured with an OpenID Connect authority finds the provider's keys through its discovery document
/// and accepts the tokens it signs, and nothing else: not a token signed with another key under the same key id,
/// not another issuer, not another audience, and not the server's own development tokens.
/// </summary>
public sealed class OidcProviderTests
{
    [Fact]
    public async Task Tokens_the_configured_provider_signs_are_accepted_and_forgeries_refused()
    {
        await using var provider = await LoopbackOidcProvider.StartAsync();
        await using var server = await TelemetryServer.StartNewAsync(new Dictionary<string, string>
        {
            ["Telemetry__Auth__Jwt__Authority"] = provider.Issuer,
            ["Telemetry__Auth__Jwt__RequireHttpsMetadata"] = "false",
        });
        using var forgedKey = RSA.Create(2048);

        async Task<HttpStatusCode> GetAsync(string token, string path)
        {
            using var client = server.ClientWith(token);
            using var response = await client.GetAsync(path);
            return response.StatusCode;
        }

        Assert.Equal(HttpStatusCode.OK, await GetAsync(provider.Issue("ops-1", "admin"), "/api/audit"));
        Assert.True(provider.DiscoveryReads > 0 && provider.KeyReads > 0, "the server never read the provider's discovery document and keys");
        Assert.Equal(HttpStatusCode.Forbidden, await GetAsync(provider.Issue("alex", "patient", patient: "p-oidc-1"), "/api/patients/p-oidc-2/trends?kind=heart_rate"));
        Assert.Equal(HttpStatusCode.Forbidden, await GetAsync(provider.Issue("alex", "patient", patient: "p-oidc-1"), "/api/audit"));

        // Scopes in `scp` (Entra ID's string, Okta's array) narrow a token as `scope` does: launched for one patient, an
        // admin's token reads that patient only, and administers nothing.
        foreach (var scp in new object[] { "launch patient/Observation.rs", new[] { "launch", "patient/Observation.rs" } })
        {
            var launched = provider.Issue("ops-2", "admin", patient: "p-oidc-1", scp: scp);
            Assert.Equal(HttpStatusCode.OK, await GetAsync(launched, "/api/patients/p-oidc-1/trends?kind=heart_rate"));
            Assert.Equal(HttpStatusCode.Forbidden, await GetAsync(launched, "/api/patients/p-oidc-2/trends?kind=heart_rate"));
            Assert.Equal(HttpStatusCode.Forbidden, await GetAsync(launched, "/api/audit"));
        }

        Assert.Equal(HttpStatusCode.Unauthorized, await GetAsync(provider.Issue("ops-1", "admin", signWith: forgedKey), "/api/audit"));
        Assert.Equal(HttpStatusCode.Unauthorized, await GetAsync(provider.Issue("ops-1", "admin", issuer: "http://127.0.0.1:1"), "/api/audit"));
        Assert.Equal(HttpStatusCode.Unauthorized, await GetAsync(provider.Issue("ops-1", "admin", audience: "someone-else"), "/api/audit"));
        Assert.Equal(HttpStatusCode.Unauthorized, await GetAsync(await server.MintTokenAsync("--role", "admin"), "/api/audit"));
    }

    [Fact]
    public async Task A_SMART_app_finds_the_providers_endpoints_and_the_scopes_read_here()
    {
        await using var provider = await LoopbackOidcProvider.StartAsync();
        await using var server = await TelemetryServer.StartNewAsync(new Dictionary<string, string>
        {
            ["Telemetry__Auth__Jwt__Authority"] = provider.Issuer,
            ["Telemetry__Auth__Jwt__RequireHttpsMetadata"] = "false",
            ["Telemetry__Auth__Jwt__SmartCapabilities__0"] = "launch-standalone",
            ["Telemetry__Auth__Jwt__SmartCapabilities__1"] = "context-standalone-patient",
        });

        // Anonymous, as SMART apps read it before anyone signs in, from a page of any origin.
        using var anonymous = server.ClientWith(null);
        anonymous.DefaultRequestHeaders.Add("Origin", "https://app.example");
        using var response = await anonymous.GetAsync("/fhir/.well-known/smart-configuration");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("*", Assert.Single(response.Headers.GetValues("Access-Control-Allow-Origin")));
        using var document = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var root = document.RootElement;
        string[] Strings(string name) => [.. root.GetProperty(name).EnumerateArray().Select(item => item.GetString()!)];
        Assert.Equal(provider.Issuer + "/authorize", root.GetProperty("authorization_endpoint").GetString());
        Assert.Equal(provider.Issuer + "/token", root.GetProperty("token_endpoint").GetString());
        Assert.Equal(provider.Issuer + "/jwks", root.GetProperty("jwks_uri").GetString());

        // What SMART allows of the provider's: no implicit or password grant, no plain PKCE, no issuer without
        // SMART's OpenID Connect profile claimed.
        Assert.Equal(["authorization_code", "refresh_token"], Strings("grant_types_supported"));
        Assert.Equal(["S256"], Strings("code_challenge_methods_supported"));
        Assert.False(root.TryGetProperty("issuer", out _));
        Assert.Equal(["launch-standalone", "context-standalone-patient"], Strings("capabilities"));
        Assert.Contains("patient/Observation.rs", Strings("scopes_supported"));
        Assert.Contains("user/Observation.read", Strings("scopes_supported"));
        Assert.Contains("launch/patient", Strings("scopes_supported"));
        Assert.DoesNotContain("launch", Strings("scopes_supported"));

        // A browser app's preflight for a search with its token is answered, before any token is asked for.
        using var preflight = new HttpRequestMessage(HttpMethod.Options, "/fhir/Observation?patient=p-oidc-1");
        preflight.Headers.Add("Origin", "https://app.example");
        preflight.Headers.Add("Access-Control-Request-Method", "GET");
        preflight.Headers.Add("Access-Control-Request-Headers", "authorization");
        using var preflighted = await anonymous.SendAsync(preflight);
        Assert.Equal(HttpStatusCode.NoContent, preflighted.StatusCode);
        Assert.Equal("*", Assert.Single(preflighted.Headers.GetValues("Access-Control-Allow-Origin")));
        Assert.Contains("authorization", preflighted.Headers.GetValues("Access-Control-Allow-Headers").Single(), StringComparison.OrdinalIgnoreCase);

        // The CapabilityStatement names SMART on FHIR and the same endpoints.
        using var metadata = await server.Http.GetAsync("/fhir/metadata");
        var capability = Assert.IsType<CapabilityStatement>(new FhirJsonDeserializer().DeserializeResource(await metadata.Content.ReadAsStringAsync()));
        var security = Assert.IsType<CapabilityStatement.SecurityComponent>(capability.Rest[0].Security);
        Assert.Equal("SMART-on-FHIR", Assert.Single(security.Service).Coding[0].Code);
        var uris = Assert.Single(security.Extension, extension => extension.Url == "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris");
        Assert.Equal(provider.Issuer + "/authorize", Assert.IsType<FhirUri>(uris.Extension.Single(e => e.Url == "authorize").Value).Value);
        Assert.Equal(provider.Issuer + "/token", Assert.IsType<FhirUri>(uris.Extension.Single(e => e.Url == "token").Value).Value);
    }

    [Fact]
    public async Task A_provider_that_does_not_answer_makes_SMART_discovery_unavailable_not_wrong()
    {
        // A provider that never answers: the kernel takes connections into the listener's backlog, and nobody reads them.
        using var silent = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        silent.Start();
        await using var server = await TelemetryServer.StartNewAsync(new Dictionary<string, string>
        {
            ["Telemetry__Auth__Jwt__Authority"] = $"http://127.0.0.1:{((IPEndPoint)silent.LocalEndpoint).Port}",
            ["Telemetry__Auth__Jwt__RequireHttpsMetadata"] = "false",
        });

        // Answered, not held for the provider's HTTP client's minute.
        using var client = new HttpClient { BaseAddress = server.Http.BaseAddress, Timeout = TimeSpan.FromSeconds(30) };
        using var response = await client.GetAsync("/fhir/.well-known/smart-configuration");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        Assert.NotNull(response.Headers.RetryAfter);

        // The CapabilityStatement is served all the same, without endpoints it cannot vouch for.
        using var metadata = await client.GetAsync("/fhir/metadata");
        Assert.Equal(HttpStatusCode.OK, metadata.StatusCode);
        var capability = Assert.IsType<CapabilityStatement>(new FhirJsonDeserializer().DeserializeResource(await metadata.Content.ReadAsStringAsync()));
        Assert.Null(capability.Rest[0].Security);
    }

    [Fact]
    public async Task With_development_tokens_accepted_beside_a_provider_neither_key_vouches_for_the_other_issuer()
    {
        await using var provider = await LoopbackOidcProvider.StartAsync();
        await using var server = await TelemetryServer.StartNewAsync(new Dictionary<string, string>
        {
            ["Telemetry__Auth__Jwt__Authority"] = provider.Issuer,
            ["Telemetry__Auth__Jwt__RequireHttpsMetadata"] = "false",
            ["Telemetry__Auth__Jwt__AcceptDevelopmentTokens"] = "true",
        });

        async Task<HttpStatusCode> GetAsync(string token)
        {
            using var client = server.ClientWith(token);
            using var response = await client.GetAsync("/api/audit");
            return response.StatusCode;
        }

        // Each with its own key and issuer: accepted.
        Assert.Equal(HttpStatusCode.OK, await GetAsync(provider.Issue("ops-1", "admin")));
        Assert.Equal(HttpStatusCode.OK, await GetAsync(await server.MintTokenAsync("--role", "admin", "--sub", "ops-1")));

        // The same subject from each: the audit tells the provider's person from a development token naming them.
        async Task<string[]> ActionsOfAsync(string actor) =>
            (await server.Http.GetFromJsonAsync<JsonElement>($"/api/audit?actor={actor}")).EnumerateArray().Select(record => record.GetProperty("action").GetString()!).ToArray();
        Assert.Equal(["GET /api/audit"], await ActionsOfAsync("ops-1"));
        Assert.Equal(["GET /api/audit"], await ActionsOfAsync("dev:ops-1"));

        // The provider's key claiming the development issuer, and the development key claiming the provider's.
        Assert.Equal(HttpStatusCode.Unauthorized, await GetAsync(provider.Issue("ops-1", "admin", issuer: "telemetry-development")));
        var developmentKey = new SymmetricSecurityKey(Convert.FromBase64String(File.ReadAllText(Path.Combine(server.DataDirectory, "development-signing-key")).Trim())) { KeyId = "development" };
        var forged = new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Issuer = provider.Issuer,
            Audience = "telemetry",
            Claims = new Dictionary<string, object> { ["sub"] = "mallory", ["role"] = "admin" },
            Expires = DateTime.UtcNow.AddHours(1),
            SigningCredentials = new SigningCredentials(developmentKey, SecurityAlgorithms.HmacSha256),
        });
        Assert.Equal(HttpStatusCode.Unauthorized, await GetAsync(forged));
    }
}
