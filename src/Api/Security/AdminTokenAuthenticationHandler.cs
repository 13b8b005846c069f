using System.Security.Claims;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Authentication;
using Microsoft.Extensions.Options;

namespace Telemetry.Api.Security;

/// <summary>Authenticates the admin bearer token as the <see cref="TelemetryRoles.Admin"/> role.</summary>
public sealed class AdminTokenAuthenticationHandler(
    IOptionsMonitor<AuthenticationSchemeOptions> options, ILoggerFactory logger, UrlEncoder encoder, AdminToken adminToken)
    : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
{
    public const string SchemeName = "AdminToken";

    protected override Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        // Devices send their own tokens to the upload and gRPC endpoints, which check them: anything that is not the
        // admin token is simply no one here (and not logged as a failure on every upload).
        if (TelemetryAuthentication.BearerToken(Request) is not { } token || !adminToken.Matches(token))
        {
            return Task.FromResult(AuthenticateResult.NoResult());
        }

        var identity = new ClaimsIdentity(
            [new Claim(TelemetryClaims.Subject, AdminToken.Principal), new Claim(TelemetryClaims.Role, TelemetryRoles.Admin)],
            SchemeName, TelemetryClaims.Subject, TelemetryClaims.Role);
        return Task.FromResult(AuthenticateResult.Success(new AuthenticationTicket(new ClaimsPrincipal(identity), SchemeName)));
    }
}
