using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.Protocols.OpenIdConnect;
using Telemetry.Api.Security;

namespace Telemetry.Api.Fhir;

/// <summary>
/// SMART App Launch's discovery: <c>/fhir/.well-known/smart-configuration</c>, which a SMART app reads first to find where
/// to sign its user in. Telemetry is the resource server; the OpenID Connect provider it takes tokens from
/// (<see cref="JwtOptions.Authority"/>) is the authorization server, so the endpoints are the provider's, from its own
/// discovery document (read once and cached with its signing keys); the scopes and permissions are what this server
/// enforces. Served to anyone, as SMART asks: it names no patient and no secret.
/// </summary>
public sealed partial class SmartConfiguration(
    IOptions<JwtOptions> jwt,
    IOptionsMonitor<JwtBearerOptions> bearer,
    ILogger<SmartConfiguration> logger)
{
    public const string Path = "/fhir/.well-known/smart-configuration";

    private static readonly TimeSpan ProviderTimeout = TimeSpan.FromSeconds(5);

    /// <summary>What SMART capabilities are claimed unless <see cref="JwtOptions.SmartCapabilities"/> says otherwise.</summary>
    public static readonly string[] DefaultCapabilities =
    [
        "launch-standalone", "client-public", "client-confidential-symmetric",
        "permission-patient", "permission-user", "permission-v1", "permission-v2",
    ];

    /// <summary>
    /// The scopes this server reads (see <see cref="SmartScopes"/>), with those an app asks the provider for alongside
    /// (<c>openid</c>, <c>fhirUser</c>, <c>launch/patient</c>, <c>offline_access</c>).
    /// </summary>
    public static readonly string[] Scopes =
    [
        "openid", "fhirUser", "launch/patient", "offline_access",
        "patient/Observation.rs", "patient/Observation.cu", "user/Observation.rs", "user/Observation.cu", "system/Observation.rs",
        "patient/Observation.read", "patient/Observation.write", "user/Observation.read", "user/Observation.write",
        "user/*.*", "system/*.*",
    ];

    /// <summary>
    /// The provider's discovery document, or null when no provider is configured (development tokens only). Throws when
    /// it cannot be read within 5 s.
    /// </summary>
    public async Task<OpenIdConnectConfiguration?> ProviderAsync(CancellationToken cancellationToken)
    {
        if (string.IsNullOrWhiteSpace(jwt.Value.Authority)
            || bearer.Get(JwtBearerDefaults.AuthenticationScheme).ConfigurationManager is not { } configurations)
        {
            return null;
        }

        // Bounded: a provider that does not answer must not hold the CapabilityStatement for the HTTP client's minute.
        using var bounded = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        bounded.CancelAfter(ProviderTimeout);
        return await configurations.GetConfigurationAsync(bounded.Token);
    }

    /// <summary>The provider's discovery document, or null when there is none or it cannot be read now (logged).</summary>
    public async Task<OpenIdConnectConfiguration?> TryProviderAsync(CancellationToken cancellationToken)
    {
        try
        {
            return await ProviderAsync(cancellationToken);
        }
        catch (Exception exception) when (!cancellationToken.IsCancellationRequested)
        {
            LogProviderUnreadable(logger, exception, jwt.Value.Authority);
            return null;
        }
    }

    /// <summary>Serves the document at <see cref="Path"/>.</summary>
    public static void Map(IEndpointRouteBuilder routes) =>
        routes.MapGet(Path, (SmartConfiguration smart, HttpResponse response, CancellationToken cancellationToken) => smart.AnswerAsync(response, cancellationToken)).RequireRateLimiting(TelemetryAuthentication.ApiRateLimit).AllowAnonymous().ExcludeFromDescription();

    private async Task<IResult> AnswerAsync(HttpResponse response, CancellationToken cancellationToken)
    {
        var authority = jwt.Value.Authority;
        OpenIdConnectConfiguration? provider;
        try
        {
            provider = await ProviderAsync(cancellationToken);
        }
        catch (Exception exception) when (!cancellationToken.IsCancellationRequested)
        {
            LogProviderUnreadable(logger, exception, authority);
            response.Headers.RetryAfter = "30";
            return TypedResults.Problem(
                statusCode: StatusCodes.Status503ServiceUnavailable,
                title: "The authorization server's discovery document could not be read",
                detail: $"This server takes tokens from {authority}, whose /.well-known/openid-configuration did not answer; try again shortly.");
        }

        if (provider is null)
        {
            return TypedResults.Problem(
                statusCode: StatusCodes.Status404NotFound,
                title: "No authorization server is configured",
                detail: "This server accepts only its own development tokens, which SMART apps cannot obtain: set Telemetry:Auth:Jwt:Authority to the OpenID Connect provider that signs people in.");
        }

        // Plain PKCE is never offered (SMART forbids it); S256 is what SMART apps send.
        var challenges = provider.CodeChallengeMethodsSupported.Where(method => method != "plain").DefaultIfEmpty("S256").ToArray();
        var document = new Dictionary<string, object>
        {
            ["issuer"] = provider.Issuer,
            ["jwks_uri"] = provider.JwksUri,
            ["authorization_endpoint"] = provider.AuthorizationEndpoint,
            ["token_endpoint"] = provider.TokenEndpoint,
            ["grant_types_supported"] = provider.GrantTypesSupported.Count > 0 ? provider.GrantTypesSupported : ["authorization_code"],
            ["response_types_supported"] = new[] { "code" },
            ["code_challenge_methods_supported"] = challenges,
            ["scopes_supported"] = Scopes,
            ["capabilities"] = jwt.Value.SmartCapabilities ?? DefaultCapabilities,
        };
        if (provider.TokenEndpointAuthMethodsSupported.Count > 0)
        {
            document["token_endpoint_auth_methods_supported"] = provider.TokenEndpointAuthMethodsSupported;
        }

        if (!string.IsNullOrEmpty(provider.UserInfoEndpoint))
        {
            document["userinfo_endpoint"] = provider.UserInfoEndpoint;
        }

        response.Headers.CacheControl = "public, max-age=300";
        return TypedResults.Json(document);
    }

    [LoggerMessage(EventId = 5002, Level = LogLevel.Warning, Message = "The OpenID Connect provider's discovery document ({Authority}) could not be read for SMART discovery")]
    private static partial void LogProviderUnreadable(ILogger logger, Exception exception, string? authority);
}
