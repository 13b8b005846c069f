using System.Threading.RateLimiting;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.Tokens;
using Telemetry.Core.Devices;

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

    /// <summary>The rate limit on every API endpoint people and tools call (<see cref="RateLimitOptions"/>).</summary>
    public const string ApiRateLimit = "api";

    public static IServiceCollection AddTelemetryAuthentication(this IServiceCollection services)
    {
        services.AddOptions<AuthOptions>().BindConfiguration(AuthOptions.Section).ValidateDataAnnotations()
            .Validate<IOptions<Telemetry.Storage.Redis.TelemetryClusterOptions>>(
                // Each server would make an admin token of its own, in its own data folder: behind a load balancer an admin
                // request would be refused by every server but one.
                (auth, cluster) => !cluster.Value.Enabled || !string.IsNullOrWhiteSpace(auth.AdminToken),
                $"A cluster needs {AuthOptions.Section}:AdminToken set, the same on every server.")
            .ValidateOnStart();
        services.AddOptions<JwtOptions>().BindConfiguration(JwtOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<AdminToken>();
        services.AddSingleton<DevelopmentTokens>();
        services.AddOptions<RateLimitOptions>().BindConfiguration(RateLimitOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<SignInThrottle>();
        services.AddRateLimiter(limiter =>
        {
            limiter.RejectionStatusCode = StatusCodes.Status429TooManyRequests;
            limiter.OnRejected = async (rejected, _) =>
            {
                rejected.HttpContext.RequestServices.GetRequiredService<SignInThrottle>().Throttled("rate");
                await RejectAsync(rejected.HttpContext, TimeSpan.FromSeconds(1), "Too many requests from this caller; slow down.");
            };
            limiter.AddPolicy(ApiRateLimit, context =>
            {
                var limits = context.RequestServices.GetRequiredService<IOptions<RateLimitOptions>>().Value;
                var caller = TelemetryClaims.CallerKey(context.User) is { } key ? "sub:" + key : "address:" + context.Connection.RemoteIpAddress;
                return RateLimitPartition.GetTokenBucketLimiter(caller, _ => new TokenBucketRateLimiterOptions
                {
                    TokenLimit = limits.Burst,
                    TokensPerPeriod = limits.RequestsPerSecond,
                    ReplenishmentPeriod = TimeSpan.FromSeconds(1),
                    QueueLimit = 0,
                    AutoReplenishment = true,
                });
            });
        });
        services.AddSingleton<CareTeams>();
        services.AddSingleton<PatientAccess>();
        services.AddSingleton<Fhir.SmartConfiguration>();
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
        services.AddSingleton<Microsoft.AspNetCore.Authorization.IAuthorizationMiddlewareResultHandler, Audit.AuditedAuthorizationResultHandler>();
        services.AddAuthorizationBuilder()
            .AddPolicy(AdminPolicy, policy => policy.RequireRole(TelemetryRoles.Admin).RequireAssertion(context => SmartScopes.AllowsAdministration(context.User)))
            .AddPolicy(PersonPolicy, policy => policy.RequireRole(TelemetryRoles.All));
        return services;
    }

    /// <summary>
    /// Who is calling, and how fast: refuses the tokens of an address that keeps presenting bad ones, authenticates,
    /// authorizes, and applies the API rate limit.
    /// </summary>
    public static WebApplication UseTelemetryAccess(this WebApplication app)
    {
        var throttle = app.Services.GetRequiredService<SignInThrottle>();
        app.Use(async (context, next) =>
        {
            var address = context.Connection.RemoteIpAddress;
            var presented = address is not null && !IsDeviceIngest(context.Request) && BearerToken(context.Request) is not null;
            if (presented && throttle.IsLockedOut(address!, out var retryAfter))
            {
                throttle.Throttled("sign_in");
                await RejectAsync(context, retryAfter, "Too many refused tokens from this address; try again later.");
                return;
            }

            await next(context);
            if (presented && context.Response.StatusCode == StatusCodes.Status401Unauthorized)
            {
                throttle.Failed(address!);
            }
        });
        app.UseAuthentication();
        app.UseAuthorization();
        app.UseRateLimiter();
        return app;
    }

    /// <summary>
    /// A device's upload or gRPC stream, or a device reading its own refusals with its own token: its token is a device's
    /// (a random secret of 256 bits, nothing to guess; the device sign-in's own lockout counts its refusals), and phones
    /// share addresses behind their carriers' NAT, so neither counts towards nor is held by the people's lockout. A
    /// device whose token was revoked, retrying, would otherwise shut out every device and person behind its address.
    /// </summary>
    private static bool IsDeviceIngest(HttpRequest request) =>
        request.Path.StartsWithSegments("/telemetry.v1.Ingest")
        || (request.Path.StartsWithSegments("/api/devices", out var rest) && rest.Value is { } tail && tail.Count(c => c == '/') == 2
            && ((HttpMethods.IsPost(request.Method) && tail.EndsWith("/readings", StringComparison.Ordinal))
                || (HttpMethods.IsGet(request.Method) && tail.EndsWith("/rejects", StringComparison.Ordinal)
                    && BearerToken(request) is { } token && DeviceToken.TryParse(token, out _, out _))));

    /// <summary>The token of an <c>Authorization: Bearer</c> header, if there is one.</summary>
    public static string? BearerToken(HttpRequest request)
    {
        var header = request.Headers.Authorization.ToString();
        const string Prefix = "Bearer ";
        return header.StartsWith(Prefix, StringComparison.OrdinalIgnoreCase) && header.Length > Prefix.Length
            ? header[Prefix.Length..].Trim()
            : null;
    }

    /// <summary>429 with Retry-After: problem+json, or an OperationOutcome on <c>/fhir</c> (but for SMART's discovery, plain JSON).</summary>
    private static Task RejectAsync(HttpContext context, TimeSpan retryAfter, string detail)
    {
        context.Response.Headers.RetryAfter = Math.Max(1, (int)Math.Ceiling(retryAfter.TotalSeconds)).ToString(System.Globalization.CultureInfo.InvariantCulture);
        IResult result = context.Request.Path.StartsWithSegments("/fhir") && !context.Request.Path.StartsWithSegments(Fhir.SmartConfiguration.Path)
            ? Fhir.FhirResult.Error(StatusCodes.Status429TooManyRequests, Hl7.Fhir.Model.OperationOutcome.IssueType.Throttled, detail)
            : TypedResults.Problem(statusCode: StatusCodes.Status429TooManyRequests, title: "Too many requests", detail: detail);
        return result.ExecuteAsync(context);
    }

    private static bool IsJwt(string? token) => token is not null && token.Count(c => c == '.') == 2;

    private static void Configure(JwtBearerOptions bearer, JwtOptions jwt, DevelopmentTokens development)
    {
        bearer.MapInboundClaims = false;
        bearer.Audience = jwt.Audience;
        if (jwt.HasProvider)
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
        if (jwt.DevelopmentTokensAccepted)
        {
            // The development key signs for the development issuer alone, and only it does: beside a provider's keys,
            // neither may vouch for the other's tokens.
            bearer.TokenValidationParameters.ValidateIssuerSigningKey = true;
            bearer.TokenValidationParameters.IssuerSigningKeyValidator = (key, token, _) =>
                ReferenceEquals(key, development.SigningKey) == string.Equals(token.Issuer, DevelopmentTokens.Issuer, StringComparison.Ordinal);
        }

        // A person is known by their subject: acknowledgements, snoozes and the audit log record it, and rate limits and
        // stream slots are per subject. A token without one names nobody and is refused.
        bearer.Events = new JwtBearerEvents
        {
            OnTokenValidated = context =>
            {
                if (string.IsNullOrWhiteSpace(context.Principal?.FindFirst(TelemetryClaims.Subject)?.Value))
                {
                    context.Fail("The token names no subject ('sub' claim).");
                }

                return Task.CompletedTask;
            },
        };
    }
}
