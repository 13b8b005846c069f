using System.Security.Claims;
using Telemetry.Core.Alerts;

namespace Telemetry.Api.Security;

/// <summary>What a person may do with one patient's record.</summary>
public enum PatientRight
{
    /// <summary>Read trends, live values, alerts and exports: admins, the patient's care teams, the patient.</summary>
    Read,

    /// <summary>Acknowledge and snooze alerts, set and replay alert rules (and so read them): admins and the patient's care teams.</summary>
    Act,
}

/// <summary>
/// Object-level access to a patient's record (OWASP API1): an admin may reach every patient, a clinician the patients
/// of their care teams, a patient only themself. A token whose SMART scopes read only in a patient's context reaches
/// only its <c>patient</c>, within that; one that carries SMART scopes reads and acts only as they grant (see
/// <see cref="SmartScopes.Reach"/>).
/// </summary>
public sealed class PatientAccess(CareTeams careTeams)
{
    /// <summary>
    /// Whether <paramref name="user"/> may read or act on <paramref name="patientId"/>'s record through the REST API and
    /// streams, which have no observation categories: a token whose scopes read only some categories reads none here.
    /// </summary>
    public ValueTask<bool> AllowsAsync(ClaimsPrincipal user, string patientId, PatientRight right, CancellationToken cancellationToken = default) =>
        AllowsCoreAsync(user, patientId, right, categoriesLeftOut: false, cancellationToken);

    /// <summary>
    /// Whether <paramref name="user"/> may read <paramref name="patientId"/>'s Observations through FHIR, whose searches
    /// leave out the categories the token's scopes do not read (see <see cref="SmartScopes.ReadableCategories"/>).
    /// </summary>
    public ValueTask<bool> AllowsFhirReadAsync(ClaimsPrincipal user, string patientId, CancellationToken cancellationToken = default) =>
        AllowsCoreAsync(user, patientId, PatientRight.Read, categoriesLeftOut: true, cancellationToken);

    private async ValueTask<bool> AllowsCoreAsync(ClaimsPrincipal user, string patientId, PatientRight right, bool categoriesLeftOut, CancellationToken cancellationToken)
    {
        // To act is to read too: an acknowledgement, a snooze or a replay answers with the patient's alerts and readings,
        // so a token whose scopes write but do not read the record (user/Observation.cu alone) acts on none.
        if (!SmartScopes.Reach(user, patientId, right)
            || (right == PatientRight.Act && !SmartScopes.Reach(user, patientId, PatientRight.Read))
            || (!categoriesLeftOut && !SmartScopes.ReadsEveryCategory(user)))
        {
            return false;
        }

        if (user.IsInRole(TelemetryRoles.Admin))
        {
            return true;
        }

        if (user.IsInRole(TelemetryRoles.Clinician)
            && await careTeams.AnyLooksAfterAsync(user.FindAll(TelemetryClaims.CareTeam).Select(claim => claim.Value), patientId, cancellationToken))
        {
            return true;
        }

        return right == PatientRight.Read
            && user.IsInRole(TelemetryRoles.Patient)
            && user.FindAll(TelemetryClaims.Patient).Any(claim => claim.Value == patientId);
    }

    /// <summary>
    /// The patients whose records <paramref name="user"/> may read, or null for every patient (an admin). Lists and
    /// streams across patients are filtered by it.
    /// </summary>
    public async ValueTask<IReadOnlySet<string>?> ReadablePatientsAsync(ClaimsPrincipal user, CancellationToken cancellationToken = default)
    {
        // Lists and streams are the REST API's: a token that reads only some observation categories lists nobody.
        if (!SmartScopes.ReadsEveryCategory(user))
        {
            return new HashSet<string>();
        }

        // A token whose SMART scopes read Observations only in a patient's context (or not at all) lists its own patient
        // at most, whatever its role would list.
        if (SmartScopes.Carries(user) && SmartScopes.ForObservations(user) != SmartScopes.ObservationRead.AsRoleAllows)
        {
            var own = new HashSet<string>(StringComparer.Ordinal);
            foreach (var patientId in user.FindAll(TelemetryClaims.Patient).Select(claim => claim.Value).Distinct(StringComparer.Ordinal))
            {
                if (await AllowsAsync(user, patientId, PatientRight.Read, cancellationToken))
                {
                    own.Add(patientId);
                }
            }

            return own;
        }

        if (user.IsInRole(TelemetryRoles.Admin))
        {
            return null;
        }

        var patients = new HashSet<string>(StringComparer.Ordinal);
        if (user.IsInRole(TelemetryRoles.Clinician))
        {
            patients.UnionWith(await careTeams.PatientsOfAsync(user.FindAll(TelemetryClaims.CareTeam).Select(claim => claim.Value), cancellationToken));
        }

        if (user.IsInRole(TelemetryRoles.Patient))
        {
            patients.UnionWith(user.FindAll(TelemetryClaims.Patient).Select(claim => claim.Value));
        }

        return patients;
    }
}

/// <summary>
/// Lets a request through only when the caller may <see cref="PatientRight"/> the patient it names, by the route's
/// <c>patientId</c> or the patient an <c>alertId</c> belongs to; otherwise 403 problem+json. A malformed id passes on
/// to the endpoint, which answers 400.
/// </summary>
public sealed class PatientAccessFilter(PatientRight right) : IEndpointFilter
{
    public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var http = context.HttpContext;
        var patientId = PatientOfRoute(http.Request);
        if (patientId is null || await http.RequestServices.GetRequiredService<PatientAccess>().AllowsAsync(http.User, patientId, right, http.RequestAborted))
        {
            return await next(context);
        }

        return TypedResults.Problem(
            statusCode: StatusCodes.Status403Forbidden,
            title: "Forbidden",
            detail: right == PatientRight.Read
                ? "This token may not read this patient's record."
                : "This token may not act on this patient's record.");
    }

    /// <summary>The patient a request's route names: its <c>patientId</c>, or the patient its <c>alertId</c> belongs to.</summary>
    public static string? PatientOfRoute(HttpRequest request)
    {
        var route = request.RouteValues;
        return route.TryGetValue("patientId", out var id) ? id as string
            : route.TryGetValue("alertId", out var alert) && AlertIds.TryParse(alert as string, out var owner, out _) ? owner
            : null;
    }
}
