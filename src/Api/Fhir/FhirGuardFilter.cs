using Hl7.Fhir.Model;
using Microsoft.Net.Http.Headers;
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
            return NotAcceptable();
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

    /// <summary>The answer to a request that accepts nothing this server writes.</summary>
    public static FhirResult NotAcceptable() => FhirResult.Error(StatusCodes.Status406NotAcceptable, OperationOutcome.IssueType.NotSupported,
        "This server answers in FHIR R4 JSON only: accept application/fhir+json (or _format=json), with fhirVersion=4.0 if any.");

    /// <summary>
    /// Whether the request accepts what this server answers, FHIR R4 in JSON: by <c>_format</c> when it has one, else by
    /// <c>Accept</c> (none, or a JSON type, <c>*/*</c> or <c>application/*</c> not refused with <c>q=0</c>). A type asking
    /// for another FHIR version (<c>application/fhir+json; fhirVersion=3.0</c>) is not taken: FHIR has a server that
    /// cannot serve that version answer 406.
    /// </summary>
    public static bool AcceptsJson(HttpRequest request)
    {
        var format = request.Query["_format"].Where(value => !string.IsNullOrWhiteSpace(value)).ToList();
        if (format.Count > 0)
        {
            return format.All(value => FormatAccepted(value!));
        }

        var accept = request.Headers.Accept;
        if (accept.Count == 0 || (accept.Count == 1 && string.IsNullOrWhiteSpace(accept[0])))
        {
            return true;
        }

        // An Accept that cannot be parsed is taken as JSON, as before (the answer is JSON whatever it said).
        return !MediaTypeHeaderValue.TryParseList(accept, out var types)
            || types.Any(type => (type.Quality is null or > 0) && IsR4(type)
                && (IsJson(type.MediaType.Value!) || type.MediaType.Equals("*/*", StringComparison.Ordinal) || type.MediaType.Equals("application/*", StringComparison.OrdinalIgnoreCase)));
    }

    private static bool FormatAccepted(string value)
    {
        // A '+' sent unencoded reaches here as a space: in the type, before any parameter. DSTU2's type
        // (application/json+fhir) is still sent by older clients.
        var end = value.IndexOf(';', StringComparison.Ordinal);
        var named = end < 0 ? value.Trim().Replace(' ', '+') : value[..end].Trim().Replace(' ', '+') + value[end..];
        return MediaTypeHeaderValue.TryParse(named, out var type) ? IsJson(type.MediaType.Value!) && IsR4(type) : named is "json";
    }

    // Any JSON type: application/json, application/fhir+json, text/json, DSTU2's application/json+fhir.
    private static bool IsJson(string mediaType) => mediaType.Equals("json", StringComparison.OrdinalIgnoreCase)
        || mediaType.EndsWith("/json", StringComparison.OrdinalIgnoreCase)
        || mediaType.EndsWith("+json", StringComparison.OrdinalIgnoreCase)
        || mediaType.Equals("application/json+fhir", StringComparison.OrdinalIgnoreCase);

    // FHIR's version parameter names a major and minor release: R4 is 4.0 (4.0.0 and 4.0.1 are taken too).
    private static bool IsR4(MediaTypeHeaderValue type)
    {
        var version = type.Parameters.FirstOrDefault(p => p.Name.Equals("fhirVersion", StringComparison.OrdinalIgnoreCase))?.Value.Value?.Trim('"');
        return version is null || version == "4.0" || version.StartsWith("4.0.", StringComparison.Ordinal);
    }

    [LoggerMessage(EventId = 5001, Level = LogLevel.Error, Message = "FHIR request {Path} failed")]
    private static partial void LogFailed(ILogger logger, Exception exception, string path);
}
