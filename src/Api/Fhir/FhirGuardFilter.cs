using Hl7.Fhir.Model;
using Telemetry.Api.Security;

namespace Telemetry.Api.Fhir;

/// <summary>
/// Every FHIR request passes here (but SMART's discovery, <see cref="SmartConfiguration"/>, which is plain JSON): JSON is
/// the only format served (406 otherwise), a valid bearer token is required except for the CapabilityStatement (an admin's, or a person's with a SMART scope that reads Observations; which
/// patient they may read is checked by <see cref="ForbiddenAsync"/>; the audit log's AuditEvents also take an admin's
/// token with a scope that writes every resource, as <c>/api/audit</c> does), and anything that goes wrong becomes an
/// OperationOutcome rather than problem+json.
/// </summary>
public sealed partial class FhirGuardFilter(ILogger<FhirGuardFilter> logger) : IEndpointFilter
{
    public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var http = context.HttpContext;
        if (!AcceptsJson(http.Request))
        {
            return FhirResult.Error(StatusCodes.Status406NotAcceptable, OperationOutcome.IssueType.NotSupported,
                "This server answers in FHIR JSON only: accept application/fhir+json (or _format=json).");
        }

        if (!http.Request.Path.Equals("/fhir/metadata", StringComparison.OrdinalIgnoreCase))
        {
            if (http.User.Identity?.IsAuthenticated != true)
            {
                http.Response.Headers.WWWAuthenticate = "Bearer";
                return FhirResult.Error(StatusCodes.Status401Unauthorized, OperationOutcome.IssueType.Login, "Send a valid bearer token: 'Authorization: Bearer <token>'.");
            }

            // The audit log is the administration's, not an Observation: a scope that writes every resource reaches it,
            // as it does /api/audit (the endpoints check the rest).
            var auditLog = http.Request.Path.StartsWithSegments("/fhir/AuditEvent", StringComparison.OrdinalIgnoreCase) && SmartScopes.AllowsAdministration(http.User);
            if (!auditLog && !SmartScopes.IsUnscopedAdmin(http.User) && SmartScopes.ForObservations(http.User) == SmartScopes.ObservationRead.None)
            {
                return FhirResult.Error(StatusCodes.Status403Forbidden, OperationOutcome.IssueType.Forbidden,
                    "This token has no SMART scope that reads Observations (user/Observation.rs or patient/Observation.rs).");
            }
        }

        try
        {
            return await next(context);
        }
        catch (BadHttpRequestException exception) when (!http.RequestAborted.IsCancellationRequested)
        {
            // The request itself was at fault as it was read (a body over the size allowed): its status, not a 500.
            return FhirResult.Error(exception.StatusCode, exception.StatusCode == StatusCodes.Status413PayloadTooLarge
                ? OperationOutcome.IssueType.TooLong
                : OperationOutcome.IssueType.Invalid, exception.Message);
        }
        catch (Exception exception) when (!http.RequestAborted.IsCancellationRequested)
        {
            LogFailed(logger, exception, http.Request.Path);
            return FhirResult.Error(StatusCodes.Status500InternalServerError, OperationOutcome.IssueType.Exception,
                "The request failed on the server; it has been logged. Try again shortly.");
        }
    }

    /// <summary>
    /// A 403 OperationOutcome when the caller may not read <paramref name="patientId"/>'s Observations: by role (an
    /// admin any patient, a clinician their care teams', a patient their own) and, with only <c>patient/</c> scopes,
    /// only the patient the token names, whatever the role (an admin's SMART app launched for one patient included).
    /// </summary>
    public static async ValueTask<FhirResult?> ForbiddenAsync(HttpContext http, string patientId)
    {
        // The patient the request reads (or is refused), as the handler found it (in the body, say): what the audit records.
        Audit.AuditFilter.ReadsPatient(http, patientId);
        var user = http.User;
        var allowed = await http.RequestServices.GetRequiredService<PatientAccess>().AllowsFhirReadAsync(user, patientId, http.RequestAborted);
        return allowed ? null : FhirResult.Error(StatusCodes.Status403Forbidden, OperationOutcome.IssueType.Forbidden,
            "This token may not read this patient's Observations.");
    }

    /// <summary>
    /// Refuses a modifier on a parameter of <paramref name="known"/> (<c>code:not</c>, <c>date:missing</c>): none is
    /// supported, and ignoring one would answer another question than the one asked (every code for <c>code:not</c>),
    /// so FHIR has a server refuse it whatever the handling. Under strict handling (<c>Prefer: handling=strict</c>) also
    /// refuses parameters the server does not know instead of ignoring them.
    /// </summary>
    public static FhirResult? RefuseUnknown(HttpRequest request, IReadOnlySet<string> known)
    {
        foreach (var key in request.Query.Keys)
        {
            if (key.IndexOf(':', StringComparison.Ordinal) is > 0 and var colon && known.Contains(key[..colon]))
            {
                return FhirResult.NotSupported($"The modifier '{key[colon..]}' of '{key[..colon]}' is not supported: this server supports no search modifiers.");
            }
        }

        if (!request.Headers["Prefer"].ToString().Contains("handling=strict", StringComparison.OrdinalIgnoreCase))
        {
            return null;
        }

        var unknown = request.Query.Keys.Where(key => !known.Contains(key) && key != "_format").ToList();
        return unknown.Count == 0 ? null : FhirResult.NotSupported($"Unknown parameter(s): {string.Join(", ", unknown)}.");
    }

    private static bool AcceptsJson(HttpRequest request)
    {
        var format = request.Query["_format"].ToString();
        if (format.Length > 0)
        {
            // A '+' sent unencoded reaches here as a space; DSTU2's type (application/json+fhir) is still sent by older clients.
            return format is "json" or "application/json" or "application/fhir+json" or "application/fhir json" or "application/json+fhir" or "application/json fhir";
        }

        var accept = request.Headers.Accept.ToString();
        return accept.Length == 0
            || accept.Contains("json", StringComparison.OrdinalIgnoreCase)
            || accept.Contains("*/*", StringComparison.Ordinal);
    }

    [LoggerMessage(EventId = 5001, Level = LogLevel.Error, Message = "FHIR request {Path} failed")]
    private static partial void LogFailed(ILogger logger, Exception exception, string path);
}
