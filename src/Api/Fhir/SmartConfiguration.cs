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
/// enforces. Served to anyone, from any origin, as SMART asks: it names no patient and no secret.
/// </summary>
public sealed partial class SmartConfiguration(
    IOptions<JwtOptions> jwt,
    IOptionsMonitor<JwtBearerOptions> bearer,
    ILogger<SmartConfiguration> logger)
{
    public const string Path = "/fhir/.well-known/smart-configuration";

    private static readonly TimeSpan ProviderTimeout = TimeSpan.FromSeconds(5);

    // The grant types SMART names (App Launch, Backend Services) and a refresh; others a provider offers (implicit,
    // password) are not SMART's.
    private static readonly string[] SmartGrantTypes = ["authorization_code", "client_credentials", "refresh_token"];

    /// <summary>What SMART capabilities are claimed unless <see cref="JwtOptions.SmartCapabilities"/> says otherwise.</summary>
    public static readonly string[] DefaultCapabilities =
    [
        "launch-standalone", "client-public", "client-confidential-symmetric",
        "permission-patient", "permission-user", "permission-v1", "permission-v2",
    ];

    /// <summary>The SMART scopes this server reads (see <see cref="SmartScopes"/>), with <c>openid</c>, <c>fhirUser</c> and <c>offline_access</c>.</summary>
    private static readonly string[] Scopes =
    [
        "openid", "fhirUser", "offline_access",
        "patient/Observation.rs", "patient/Observation.cu", "user/Observation.rs", "user/Observation.cu", "system/Observation.rs",
        "patient/Observation.read", "patient/Observation.write", "user/Observation.read", "user/Observation.write",
        "user/*.*", "system/*.*",
    ];

    // Whether the last read of the provider's document failed: a failure is logged once until a read succeeds again,
    // not once for every anonymous request for the CapabilityStatement.
    private int _unreadable;

    /// <summary>
    /// The provider's discovery document, or null when no provider is configured (development tokens only). Throws when
    /// it cannot be read within 5 s (the read goes on, and a later call finds it).
    /// </summary>
    public async Task<OpenIdConnectConfiguration?> ProviderAsync(CancellationToken cancellationToken)
    {
        if (!jwt.Value.HasProvider
            || bearer.Get(JwtBearerDefaults.AuthenticationScheme).ConfigurationManager is not { } configurations)
        {
            return null;
        }

        try
        {
            // Bounded here: the configuration manager's own fetch is not cancelled by the token it is given, and a
            // provider that does not answer would hold the CapabilityStatement for the HTTP client's minute.
            var provider = await configurations.GetConfigurationAsync(cancellationToken).WaitAsync(ProviderTimeout, cancellationToken);
            Volatile.Write(ref _unreadable, 0);
            return provider;
        }
        catch (Exception exception) when (!cancellationToken.IsCancellationRequested)
        {
            if (Interlocked.Exchange(ref _unreadable, 1) == 0)
            {
                LogProviderUnreadable(logger, exception, jwt.Value.Authority);
            }

            throw;
        }
    }

    /// <summary>The provider's discovery document, or null when there is none or it cannot be read now.</summary>
    public async Task<OpenIdConnectConfiguration?> TryProviderAsync(CancellationToken cancellationToken)
    {
        try
        {
            return await ProviderAsync(cancellationToken);
        }
        catch (Exception) when (!cancellationToken.IsCancellationRequested)
        {
            return null;
        }
    }

    /// <summary>Serves the document at <see cref="Path"/>.</summary>
    public static void Map(IEndpointRouteBuilder routes) =>
        routes.MapGet(Path, (SmartConfiguration smart, HttpResponse response, CancellationToken cancellationToken) => smart.AnswerAsync(response, cancellationToken))
            .RequireRateLimiting(TelemetryAuthentication.ApiRateLimit)
            .RequireCors(FhirEndpoints.CorsPolicy)
            .AllowAnonymous()
            .ExcludeFromDescription();

    private async Task<IResult> AnswerAsync(HttpResponse response, CancellationToken cancellationToken)
    {
        var authority = jwt.Value.Authority;
        OpenIdConnectConfiguration? provider;
        try
        {
            provider = await ProviderAsync(cancellationToken);
        }
        catch (Exception) when (!cancellationToken.IsCancellationRequested)
        {
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

        response.Headers.CacheControl = "public, max-age=300";
        return TypedResults.Json(Document(provider, jwt.Value.SmartCapabilities ?? DefaultCapabilities));
    }

    /// <summary>The discovery document: what the provider's says of its endpoints, what SMART allows of it, and the scopes read here.</summary>
    private static Dictionary<string, object> Document(OpenIdConnectConfiguration provider, string[] capabilities)
    {
        var document = new Dictionary<string, object>();
        void Add(string name, string? value)
        {
            if (!string.IsNullOrEmpty(value))
            {
                document[name] = value;
            }
        }

        // The issuer only with SMART's OpenID Connect profile claimed, as SMART asks.
        if (capabilities.Contains("sso-openid-connect"))
        {
            Add("issuer", provider.Issuer);
        }

        Add("jwks_uri", provider.JwksUri);
        Add("authorization_endpoint", provider.AuthorizationEndpoint);
        Add("token_endpoint", provider.TokenEndpoint);
        Add("userinfo_endpoint", provider.UserInfoEndpoint);
        document["grant_types_supported"] = provider.GrantTypesSupported.Count == 0
            ? ["authorization_code"]
            : provider.GrantTypesSupported.Intersect(SmartGrantTypes, StringComparer.Ordinal).ToArray();
        if (provider.TokenEndpointAuthMethodsSupported.Count > 0)
        {
            document["token_endpoint_auth_methods_supported"] = provider.TokenEndpointAuthMethodsSupported;
        }

        document["response_types_supported"] = new[] { "code" };

        // PKCE: S256 when the provider says so or says nothing (as Entra ID), never plain (SMART forbids it).
        var challenges = provider.CodeChallengeMethodsSupported;
        document["code_challenge_methods_supported"] = challenges.Count == 0 || challenges.Contains("S256") ? ["S256"] : Array.Empty<string>();

        // The launch scopes only with the launches they ask for.
        document["scopes_supported"] = Scopes
            .Concat(capabilities.Contains("context-standalone-patient") ? ["launch/patient"] : [])
            .Concat(capabilities.Contains("launch-ehr") ? ["launch"] : [])
            .ToArray();
        document["capabilities"] = capabilities;
        return document;
    }

    [LoggerMessage(EventId = 5002, Level = LogLevel.Warning, Message = "The OpenID Connect provider's discovery document ({Authority}) could not be read for SMART discovery and the CapabilityStatement; logged again only after it has been read")]
    private static partial void LogProviderUnreadable(ILogger logger, Exception exception, string? authority);
}
