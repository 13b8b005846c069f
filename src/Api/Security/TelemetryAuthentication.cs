using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.Tokens;

namespace Telemetry.Api.Security;

/// <summary>
/// Who is calling: people with a JWT from the configured OpenID Connect provider (or a development token), tools with
/// the admin token. One bearer header carries either; a token with the three parts of a JWT is validated as one.
/// </summary>
public static class TelemetryAuthentication
{
    public const string Scheme = "Telemetry";

    /// <summary>The policy every admin-only endpoint requires.</summary>
    public const string AdminPolicy = "admin";

    /// <summary>
    /// The policy of endpoints people in any role may call; which patient's record they may reach is then decided by
    /// <see cref="PatientAccess"/>.
    /// </summary>
    public const string PersonPolicy = "person";

    public static IServiceCollection AddTelemetryAuthentication(this IServiceCollection services)
    {
        services.AddOptions<AuthOptions>().BindConfiguration(AuthOptions.Section);
        services.AddOptions<JwtOptions>().BindConfiguration(JwtOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<AdminToken>();
        services.AddSingleton<DevelopmentTokens>();
        services.AddSingleton<CareTeams>();
        services.AddSingleton<PatientAccess>();
        services.AddAuthentication(Scheme)
            .AddPolicyScheme(Scheme, Scheme, scheme =>
            {
                scheme.ForwardDefaultSelector = context => IsJwt(BearerToken(context.Request))
                    ? JwtBearerDefaults.AuthenticationScheme
                    : AdminTokenAuthenticationHandler.SchemeName;

                // The JWT handler's challenge says what a client needs to know: 'WWW-Authenticate: Bearer'.
                scheme.ForwardChallenge = JwtBearerDefaults.AuthenticationScheme;
            })
            .AddScheme<AuthenticationSchemeOptions, AdminTokenAuthenticationHandler>(AdminTokenAuthenticationHandler.SchemeName, null)
            .AddJwtBearer();
        services.AddOptions<JwtBearerOptions>(JwtBearerDefaults.AuthenticationScheme)
            .Configure<IOptions<JwtOptions>, DevelopmentTokens>((bearer, jwt, development) => Configure(bearer, jwt.Value, development));
        services.AddAuthorizationBuilder()
            .AddPolicy(AdminPolicy, policy => policy.RequireRole(TelemetryRoles.Admin))
            .AddPolicy(PersonPolicy, policy => policy.RequireRole(TelemetryRoles.All));
        return services;
    }

    /// <summary>The token of an <c>Authorization: Bearer</c> header, if there is one.</summary>
    public static string? BearerToken(HttpRequest request)
    {
        var header = request.Headers.Authorization.ToString();
        const string Prefix = "Bearer ";
        return header.StartsWith(Prefix, StringComparison.OrdinalIgnoreCase) && header.Length > Prefix.Length
            ? header[Prefix.Length..].Trim()
            : null;
    }

    private static bool IsJwt(string? token) => token is not null && token.Count(c => c == '.') == 2;

    private static void Configure(JwtBearerOptions bearer, JwtOptions jwt, DevelopmentTokens development)
    {
        bearer.MapInboundClaims = false;
        bearer.Audience = jwt.Audience;
        if (!string.IsNullOrWhiteSpace(jwt.Authority))
        {
            // The provider's issuer and signing keys come from its discovery document.
            bearer.Authority = jwt.Authority;
            bearer.RequireHttpsMetadata = jwt.RequireHttpsMetadata;
        }

        bearer.TokenValidationParameters = new TokenValidationParameters
        {
            ValidAudience = jwt.Audience,
            ValidIssuers = jwt.DevelopmentTokensAccepted ? [DevelopmentTokens.Issuer] : [],
            IssuerSigningKeys = jwt.DevelopmentTokensAccepted ? [development.SigningKey] : [],
            NameClaimType = TelemetryClaims.Subject,
            RoleClaimType = TelemetryClaims.Role,
            ClockSkew = TimeSpan.FromMinutes(1),
        };
    }
}
