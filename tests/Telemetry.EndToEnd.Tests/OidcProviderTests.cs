using System.Net;
using System.Security.Cryptography;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

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
        Assert.Equal(HttpStatusCode.OK, await GetAsync(await server.MintTokenAsync("--role", "admin", "--sub", "dev-1")));

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
