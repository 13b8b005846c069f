using System.Collections.Frozen;
using Telemetry.Api.Fhir;
using Telemetry.Api.Security;
using Telemetry.Storage.Audit;

namespace Telemetry.Api.Audit;

/// <summary>
/// Writes an <see cref="AuditRecord"/> for every request it wraps, before the response is sent: who (the token's
/// subject and role), which patient (the route's, an alert's, the one a handler names with <see cref="ReadsPatient"/>,
/// or FHIR's <c>patient</c>/<c>subject</c>), what (method and path), and the status answered, refusals included. A
/// handler that writes its own body (a stream, a CSV export) is recorded as its response starts: with 200 as it opens,
/// or with the status of its refusal.
/// </summary>
public sealed class AuditFilter : IEndpointFilter
{
    /// <summary>The status recorded for a request whose client hung up before its answer began (as proxies log it).</summary>
    public const int ClientClosedRequest = 499;

    private static readonly object PatientKey = new();

    /// <summary>The FHIR searches and operations whose parameters name the patient they read, with those parameters' names.</summary>
    private static readonly FrozenDictionary<string, string[]> FhirSearches = new Dictionary<string, string[]>
    {
        ["/fhir/Observation"] = ["patient", "subject"],
        ["/fhir/Observation/_search"] = ["patient", "subject"],
        ["/fhir/Observation/$lastn"] = ["patient", "subject"],
        ["/fhir/Observation/$stats"] = ["subject", "patient"],
        ["/fhir/AuditEvent"] = ["patient", "entity"],
    }.ToFrozenDictionary(StringComparer.OrdinalIgnoreCase);

    /// <summary>
    /// Names the patient whose record the request reads or changes, where neither its route nor its query string does (a
    /// FHIR operation's body, a device's quarantined readings, the device bound to them): the audit record names that patient.
    /// </summary>
    public static void ReadsPatient(HttpContext http, string patientId) => http.Items[PatientKey] = patientId;

    public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var http = context.HttpContext;
        var audit = http.RequestServices.GetRequiredService<AuditLog>();
        if (http.Request.Path.StartsWithSegments("/fhir/metadata"))
        {
            return await next(context);
        }

        // A handler that writes its own body (a stream, an export) answers only when it ends, after the client has the
        // data: it is recorded as its response starts (before the client sees a byte), with the status it starts with.
        // Any other is recorded with the status it answers, before that answer is written. Once either way.
        var recorded = 0;
        Task RecordOnceAsync(int status) => Interlocked.Exchange(ref recorded, 1) == 0 ? RecordRequestAsync(audit, http, status) : Task.CompletedTask;
        http.Response.OnStarting(() => RecordOnceAsync(http.Response.StatusCode));
        object? result;
        try
        {
            result = await next(context);
        }
        catch (Exception exception) when (!http.Response.HasStarted)
        {
            // A request at fault as it was read (a body over the size allowed, one cut short) is answered with its own
            // status; one whose client hung up before its answer began (an export still gathering its first rows) is
            // recorded as such: it was asked for and read, whether or not a byte of it went out.
            await RecordOnceAsync(
                http.RequestAborted.IsCancellationRequested ? ClientClosedRequest
                : exception is BadHttpRequestException bad ? bad.StatusCode
                : StatusCodes.Status500InternalServerError);
            throw;
        }

        await RecordOnceAsync(StatusOf(result, http.Response));
        return result;
    }

    /// <summary>
    /// The status a handler's result answers with: that of the result inside a <c>Results&lt;…&gt;</c> union, or, for a
    /// result without one (the empty result of a request whose arguments could not be bound, a handler that answered
    /// itself), the response's.
    /// </summary>
    private static int StatusOf(object? result, HttpResponse response)
    {
        while (result is INestedHttpResult nested)
        {
            result = nested.Result;
        }

        return result is IStatusCodeHttpResult { StatusCode: { } code } ? code : response.StatusCode;
    }

    /// <summary>
    /// Records the request with the status it was answered, unless it came with no token at all and was answered 401: it
    /// read nothing and names nobody, and an anonymous flood, which no rate limit holds before authorization, must not
    /// fill the log (refused tokens are bounded by the sign-in lockout).
    /// </summary>
    public static Task RecordRequestAsync(AuditLog audit, HttpContext http, int status) =>
        status == StatusCodes.Status401Unauthorized && Security.TelemetryAuthentication.BearerToken(http.Request) is null
            ? Task.CompletedTask
            : RecordAsync(audit, http, PatientOf(http), status);

    /// <summary>
    /// Records that the request <paramref name="http"/> read (or, for a care team's change, gave or took access to) each of
    /// <paramref name="patients"/>' records: for requests that concern several patients, beside the request's own record.
    /// </summary>
    public static async Task RecordEachAsync(AuditLog audit, HttpContext http, IEnumerable<string> patients)
    {
        foreach (var patientId in patients)
        {
            await RecordAsync(audit, http, patientId, StatusCodes.Status200OK);
        }
    }

    /// <summary>Records that the request <paramref name="http"/> read <paramref name="patientId"/>'s record.</summary>
    public static Task RecordAsync(AuditLog audit, HttpContext http, string? patientId, int status)
    {
        var user = http.User;
        var roles = string.Join(',', Security.TelemetryRoles.All.Where(user.IsInRole));
        var action = $"{http.Request.Method} {http.Request.Path}{http.Request.QueryString}";
        return audit.WriteAsync(TelemetryClaims.Actor(http) ?? "anonymous", roles.Length > 0 ? roles : "none", patientId, action, status, CancellationToken.None);
    }

    /// <summary>The patient a request reads: one a handler named, the route's, or a FHIR search's patient parameter.</summary>
    public static string? PatientOf(HttpContext http)
    {
        if (http.Items.TryGetValue(PatientKey, out var named) && named is string patientId)
        {
            return patientId;
        }

        if (PatientAccessFilter.PatientOfRoute(http.Request) is { } routed)
        {
            return routed;
        }

        // FHIR's search parameters name the patient a FHIR search reads; anywhere else a request's query is not the
        // audit's to trust (GET /api/alerts?patient=p-002 lists the caller's own patients' alerts, read nobody else's;
        // GET /fhir/Patient?patient=p-002 reads nothing), nor is a parameter the search does not take.
        // As routing reads the path: a trailing slash names the same search.
        if (!FhirSearches.TryGetValue((http.Request.Path.Value ?? string.Empty).TrimEnd('/'), out var names))
        {
            return null;
        }

        // The first patient the parameters name (given more than once, or by both names, a search is refused for
        // naming two: the first is the one recorded, as a lone one is).
        foreach (var name in names)
        {
            if (http.Request.Query.TryGetValue(name, out var values))
            {
                foreach (var value in values)
                {
                    if (FhirParameters.TryReadReference(value ?? string.Empty, out var fhirPatient))
                    {
                        return fhirPatient;
                    }
                }
            }
        }

        return null;
    }
}
