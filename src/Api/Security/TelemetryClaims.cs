using System.Security.Claims;
using Microsoft.Extensions.Options;

namespace Telemetry.Api.Security;

/// <summary>The claims people's tokens carry (see the README's access section).</summary>
public static class TelemetryClaims
{
    /// <summary>
    /// What a caller's limits (requests per second, open streams) are counted by: their subject as its issuer names it,
    /// so that the same <c>sub</c> from two issuers (the provider's and the development tokens', or a person whose
    /// <c>sub</c> is <c>admin</c> and the admin token) is two callers. Null for no one.
    /// </summary>
    public static string? CallerKey(ClaimsPrincipal user) =>
        user.Identity is { IsAuthenticated: true } && user.FindFirst(Subject) is { } subject
            ? $"{subject.Issuer}\n{subject.Value}"
            : null;

    /// <summary>Who the person is; recorded as who acknowledged an alert and in the audit log (see <see cref="Actor"/>).</summary>
    public const string Subject = "sub";

    /// <summary>What <see cref="Actor"/> puts before a development token's subject where it could be taken for someone else's.</summary>
    public const string DevelopmentActorPrefix = "dev:";

    /// <summary>
    /// Who a caller is, as the audit log and an alert's acknowledgement or snooze record them: a token's subject, and
    /// <c>admin</c> for the admin token. A development token's subject is marked <c>dev:</c> wherever it could be taken
    /// for someone else's: when it is <c>admin</c> (the admin token's name, and what the token command gives the admin
    /// role by default), and whenever a provider's tokens are accepted too (<paramref name="besideProvider"/>: their
    /// subjects are real people's, and anyone with the server's development key could mint one). Null for no one.
    /// </summary>
    public static string? Actor(ClaimsPrincipal user, bool besideProvider)
    {
        if (user.Identity is not { IsAuthenticated: true, Name: { } name })
        {
            return null;
        }

        var development = string.Equals(user.FindFirst(Subject)?.Issuer, DevelopmentTokens.Issuer, StringComparison.Ordinal);
        return development && (besideProvider || name == AdminToken.Principal) ? DevelopmentActorPrefix + name : name;
    }

    /// <summary>Who the caller of <paramref name="http"/> is (<see cref="Actor(ClaimsPrincipal, bool)"/>), beside a provider when one is configured.</summary>
    public static string? Actor(HttpContext http) =>
        Actor(http.User, http.RequestServices.GetRequiredService<IOptions<JwtOptions>>().Value.HasProvider);

    /// <summary>One of <see cref="TelemetryRoles"/>; may repeat.</summary>
    public const string Role = "role";

    /// <summary>For a patient, the patient they are (SMART's launch context names it the same way).</summary>
    public const string Patient = "patient";

    /// <summary>For a clinician, a care team they belong to; may repeat.</summary>
    public const string CareTeam = "care_team";

    /// <summary>SMART on FHIR scopes, space-separated (<c>user/Observation.rs</c>).</summary>
    public const string Scope = "scope";

    /// <summary>
    /// Scopes as Microsoft Entra ID (a space-separated string) and Okta (one claim per scope) name them: read as
    /// <see cref="Scope"/> is, so a token whose provider names its scopes so is narrowed by them all the same.
    /// </summary>
    public const string ScopeAsScp = "scp";
}

/// <summary>The roles people act in.</summary>
public static class TelemetryRoles
{
    /// <summary>Runs the service: devices, rules, every patient, the audit log.</summary>
    public const string Admin = "admin";

    /// <summary>Reads and acts for the patients of their care teams.</summary>
    public const string Clinician = "clinician";

    /// <summary>Reads their own record only.</summary>
    public const string Patient = "patient";

    public static readonly IReadOnlyList<string> All = [Admin, Clinician, Patient];
}
