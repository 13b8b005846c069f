using System.Security.Claims;

namespace Telemetry.Api.Security;

/// <summary>
/// SMART on FHIR scopes that let a token read Observations: v2 (<c>user/Observation.rs</c>) and v1
/// (<c>user/Observation.read</c>), for the contexts <c>patient</c>, <c>user</c> and <c>system</c>, or any resource (<c>*</c>).
/// </summary>
public static class SmartScopes
{
    /// <summary>How a token may read Observations: not at all, only its own patient's, or as far as its role allows.</summary>
    public enum ObservationRead
    {
        None,
        OwnPatient,
        AsRoleAllows,
    }

    public static ObservationRead ForObservations(ClaimsPrincipal user)
    {
        var contexts = Scopes(user)
            .Select(ReadContext)
            .OfType<string>()
            .ToHashSet(StringComparer.Ordinal);
        return contexts.Contains("user") || contexts.Contains("system") ? ObservationRead.AsRoleAllows
            : contexts.Contains("patient") ? ObservationRead.OwnPatient
            : ObservationRead.None;
    }

    /// <summary>
    /// Whether the token carries SMART scopes (<c>patient/…</c>, <c>user/…</c>, <c>system/…</c>): a SMART app's token,
    /// which does what they grant and no more, whatever its role would allow. A token without them (other scopes, such
    /// as <c>openid</c>, are not theirs) does what its role allows.
    /// </summary>
    public static bool Carries(ClaimsPrincipal user) =>
        Scopes(user).Any(scope => scope.IndexOf('/', StringComparison.Ordinal) is > 0 and var slash && scope[..slash] is "patient" or "user" or "system");

    /// <summary>
    /// Whether the token's SMART scopes (if it carries any: see <see cref="Carries"/>) reach <paramref name="patientId"/>'s
    /// record for <paramref name="right"/>, its role's say apart. To read: a scope that reads Observations (or every
    /// resource) as a user or the system, or in a patient's context for the token's own <c>patient</c>. To act
    /// (acknowledge, snooze, set alert rules): a scope that writes them (v1 <c>write</c> or <c>*</c>, v2 any of
    /// <c>c</c>, <c>u</c>, <c>d</c>) likewise; a <c>patient/…</c> write scope acts on the token's own patient only.
    /// A SMART app given read scopes reads, and no more.
    /// </summary>
    public static bool Reach(ClaimsPrincipal user, string patientId, PatientRight right)
    {
        if (!Carries(user))
        {
            return true;
        }

        var own = user.FindAll(TelemetryClaims.Patient).Any(claim => claim.Value == patientId);
        return right == PatientRight.Read
            ? ForObservations(user) switch
            {
                ObservationRead.AsRoleAllows => true,
                ObservationRead.OwnPatient => own,
                _ => false,
            }
            : Scopes(user).Any(scope => WriteGrant(scope) is ({ } context, "Observation" or "*") && (context is "user" or "system" || (context == "patient" && own)));
    }

    /// <summary>
    /// Whether one of the token's scopes writes every resource as a user or the system (<c>user/*.cud</c>,
    /// <c>user/*.write</c>, <c>user/*.*</c>, <c>system/*.…</c>): what a token that carries SMART scopes needs for the
    /// administration (devices, care teams, the audit log), which is no FHIR resource a narrower scope could name.
    /// </summary>
    public static bool WritesEverything(ClaimsPrincipal user) => Scopes(user).Any(scope => WriteGrant(scope) is ("user" or "system", "*"));

    /// <summary>
    /// Whether the token may administer (devices, care teams, the audit log, on REST and FHIR alike): an admin's, without
    /// SMART scopes or with one that writes every resource (see <see cref="WritesEverything"/>).
    /// </summary>
    public static bool AllowsAdministration(ClaimsPrincipal user) =>
        user.IsInRole(TelemetryRoles.Admin) && (!Carries(user) || WritesEverything(user));

    /// <summary>An admin's token without SMART scopes: it reads every patient's Observations, needing no scope to.</summary>
    public static bool IsUnscopedAdmin(ClaimsPrincipal user) => user.IsInRole(TelemetryRoles.Admin) && !Carries(user);

    private static IEnumerable<string> Scopes(ClaimsPrincipal user) =>
        user.FindAll(claim => claim.Type is TelemetryClaims.Scope or TelemetryClaims.ScopeAsScp)
            .SelectMany(claim => claim.Value.Split(' ', StringSplitOptions.RemoveEmptyEntries));

    /// <summary>The context and resource a scope grants writing to, or null when it grants none (a scope narrowed by a query grants none here).</summary>
    private static (string Context, string Resource)? WriteGrant(string scope)
    {
        var slash = scope.IndexOf('/', StringComparison.Ordinal);
        var dot = scope.LastIndexOf('.');
        if (slash <= 0 || dot <= slash || scope.Contains('?', StringComparison.Ordinal))
        {
            return null;
        }

        var permission = scope[(dot + 1)..];
        var writes = permission is "write" or "*" || (permission.Length > 0 && permission.All(c => "cruds".Contains(c)) && permission.Any(c => "cud".Contains(c)));
        return writes ? (scope[..slash], scope[(slash + 1)..dot]) : null;
    }

    /// <summary>How a v2 scope narrows to an observation category: <c>category=</c> the category system, <c>|</c>, the code.</summary>
    private const string CategoryQuery = "category=" + Fhir.FhirVitals.CategorySystem + "|";

    /// <summary>
    /// The observation categories <paramref name="user"/>'s SMART scopes read, or null for every one (a token without
    /// SMART scopes, or with a scope that reads Observations unnarrowed). A token whose reading scopes are all narrowed
    /// to categories (<c>patient/Observation.rs?category=…|vital-signs</c>) reads those categories only: FHIR searches
    /// leave the others out, and the REST API, which has no categories, serves it only if they are every category here.
    /// Only the scopes of the context the token reads in count (see <see cref="ForObservations"/>): with any
    /// <c>user/</c> or <c>system/</c> scope that reads Observations, what those grant, for every patient it reaches,
    /// its own patient too (its <c>patient/</c> scopes then add nothing: narrower than SMART's sum of scopes, never
    /// wider); otherwise its <c>patient/</c> scopes'.
    /// </summary>
    public static IReadOnlySet<string>? ReadableCategories(ClaimsPrincipal user)
    {
        if (!Carries(user))
        {
            return null;
        }

        var reach = ForObservations(user);
        var categories = new HashSet<string>(StringComparer.Ordinal);
        foreach (var scope in Scopes(user))
        {
            if (ReadContext(scope) is not { } context || (context == "patient") != (reach == ObservationRead.OwnPatient))
            {
                continue;
            }

            if (CategoryOf(scope) is not { } category)
            {
                return null;
            }

            categories.Add(category);
        }

        return categories;
    }

    /// <summary>Whether <paramref name="user"/>'s scopes read Observations of every category here (or carry no SMART scopes): what the REST API needs.</summary>
    public static bool ReadsEveryCategory(ClaimsPrincipal user) =>
        ReadableCategories(user) is not { } categories || Fhir.FhirVitals.Categories.Keys.All(categories.Contains);

    /// <summary>The category a scope narrows to, or null when it is not narrowed to one.</summary>
    private static string? CategoryOf(string scope)
    {
        var question = scope.IndexOf('?', StringComparison.Ordinal);
        return question >= 0 && scope.AsSpan(question + 1).StartsWith(CategoryQuery, StringComparison.Ordinal) ? scope[(question + 1 + CategoryQuery.Length)..] : null;
    }

    /// <summary>
    /// The context (<c>patient</c>, <c>user</c>, <c>system</c>) of a scope that grants reading Observations, or null. A v2
    /// scope narrowed by a query (<c>patient/Observation.rs?category=…|laboratory</c>) grants it, for that category only
    /// (see <see cref="ReadableCategories"/>), when it narrows to a category Observations here are filed under
    /// (vital-signs, laboratory, activity); narrowed any other way, it grants nothing here.
    /// </summary>
    private static string? ReadContext(string scope)
    {
        var question = scope.IndexOf('?', StringComparison.Ordinal);
        if (question >= 0)
        {
            if (CategoryOf(scope) is not { } category || !Fhir.FhirVitals.Categories.ContainsKey(category))
            {
                return null;
            }

            scope = scope[..question];
        }

        var slash = scope.IndexOf('/', StringComparison.Ordinal);
        var dot = scope.LastIndexOf('.');
        if (slash <= 0 || dot <= slash)
        {
            return null;
        }

        var context = scope[..slash];
        var resource = scope[(slash + 1)..dot];
        var permission = scope[(dot + 1)..];
        var reads = permission is "read" or "*"
            || (permission.Length > 0 && permission.All(c => "cruds".Contains(c)) && (permission.Contains('r') || permission.Contains('s')));
        return context is "patient" or "user" or "system" && resource is "Observation" or "*" && reads ? context : null;
    }
}
