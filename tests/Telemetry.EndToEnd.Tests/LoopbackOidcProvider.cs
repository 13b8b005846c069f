using System.Security.Cryptography;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Telemetry.EndToEnd.Tests;

/// <summary>
/// A small OpenID Connect provider on loopback Kestrel, as far as a resource server sees one: a discovery document,
/// its signing keys (JWKS), and tokens it signs with them.
/// </summary>
public sealed class LoopbackOidcProvider : IAsyncDisposable
{
    public const string KeyId = "provider-key-1";

    private readonly RSA _key = RSA.Create(2048);
    private readonly WebApplication _app;
    private int _discoveryReads;
    private int _keyReads;

    private LoopbackOidcProvider(WebApplication app) => _app = app;

    /// <summary>The provider's issuer URL, which is also the server's configured authority.</summary>
    public string Issuer { get; private set; } = null!;

    public int DiscoveryReads => Volatile.Read(ref _discoveryReads);

    public int KeyReads => Volatile.Read(ref _keyReads);

    public static async Task<LoopbackOidcProvider> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        var provider = new LoopbackOidcProvider(builder.Build());
        provider._app.MapGet("/.well-known/openid-configuration", () =>
        {
            Interlocked.Increment(ref provider._discoveryReads);
            return Results.Json(new Dictionary<string, object>
            {
                ["issuer"] = provider.Issuer,
                ["jwks_uri"] = provider.Issuer + "/jwks",
                ["authorization_endpoint"] = provider.Issuer + "/authorize",
                ["token_endpoint"] = provider.Issuer + "/token",
                ["grant_types_supported"] = new[] { "authorization_code", "implicit", "password", "refresh_token" },
                ["code_challenge_methods_supported"] = new[] { "plain", "S256" },
                ["response_types_supported"] = new[] { "code" },
                ["subject_types_supported"] = new[] { "public" },
                ["id_token_signing_alg_values_supported"] = new[] { "RS256" },
            });
        });
        provider._app.MapGet("/jwks", () =>
        {
            Interlocked.Increment(ref provider._keyReads);
            var parameters = provider._key.ExportParameters(includePrivateParameters: false);
            return Results.Json(new
            {
                keys = new[]
                {
                    new Dictionary<string, string>
                    {
                        ["kty"] = "RSA",
                        ["use"] = "sig",
                        ["alg"] = "RS256",
                        ["kid"] = KeyId,
                        ["n"] = Base64UrlEncoder.Encode(parameters.Modulus),
                        ["e"] = Base64UrlEncoder.Encode(parameters.Exponent),
                    },
                },
            });
        });
        await provider._app.StartAsync();
        provider.Issuer = provider._app.Urls.Single();
        return provider;
    }

    /// <summary>
    /// A token as the provider issues it; <paramref name="signWith"/> and <paramref name="issuer"/> make forgeries.
    /// <paramref name="scp"/>, given, names the scopes in an <c>scp</c> claim (a string, or an array) instead of <c>scope</c>.
    /// </summary>
    public string Issue(string subject, string role, string? patient = null, RSA? signWith = null, string? issuer = null, string audience = "telemetry", object? scp = null)
    {
        var claims = new Dictionary<string, object> { ["role"] = role };
        if (scp is null)
        {
            claims["scope"] = role == "admin" ? "user/*.*" : "user/Observation.rs";
        }
        else
        {
            claims["scp"] = scp;
        }

        if (patient is not null)
        {
            claims["patient"] = patient;
        }

        return new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Issuer = issuer ?? Issuer,
            Audience = audience,
            Subject = new System.Security.Claims.ClaimsIdentity([new System.Security.Claims.Claim("sub", subject)]),
            Claims = claims,
            Expires = DateTime.UtcNow.AddMinutes(10),
            SigningCredentials = new SigningCredentials(new RsaSecurityKey(signWith ?? _key) { KeyId = KeyId }, SecurityAlgorithms.RsaSha256),
        });
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
        _key.Dispose();
    }
}
