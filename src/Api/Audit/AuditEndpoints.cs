using Telemetry.Api.Security;
using Telemetry.Core;
using Telemetry.Storage.Audit;

namespace Telemetry.Api.Audit;

/// <summary>The audit log, for admins: who read which patient's record, and whether the chain is intact.</summary>
public static class AuditEndpoints
{
    public const int MaxListed = 1_000;

    public static IEndpointRouteBuilder MapAuditEndpoints(this IEndpointRouteBuilder routes)
    {
        // Audited as any read of patient data: who looked at whose accesses is itself an access to that patient's record.
        var audit = routes.MapGroup("/api/audit").RequireAuthorization(TelemetryAuthentication.AdminPolicy).RequireRateLimiting(TelemetryAuthentication.ApiRateLimit)
            .Audited().WithTags("Access");
        audit.MapGet("/", ListAsync).WithSummary("Accesses to patients' records, newest first");
        audit.MapGet("/verify", (AuditLog log) => Task.Run(() => TypedResults.Ok(log.Verify())))
            .WithSummary("Checks every record's hash and link; says where the chain first breaks");
        return routes;
    }

    private static async Task<IResult> ListAsync(string? patientId, string? actor, DateTimeOffset? from, DateTimeOffset? to, int? limit, long? before, AuditLog log, HttpContext context)
    {
        if (before is <= 0)
        {
            return Invalid("before", "the seq of the last record of the page before: records older than it follow");
        }

        if (patientId is not null && !Identifier.IsValid(patientId))
        {
            return Invalid("patientId", Identifier.Shape);
        }

        if (limit is < 1 or > MaxListed)
        {
            return Invalid("limit", $"1 to {MaxListed}");
        }

        if (patientId is not null)
        {
            AuditFilter.ReadsPatient(context, patientId);
        }

        return TypedResults.Ok(await Task.Run(() => log.Query(patientId, actor, from, to, limit ?? 100, before)));
    }

    private static IResult Invalid(string field, string expected) =>
        TypedResults.ValidationProblem(new Dictionary<string, string[]> { [field] = [expected] });
}
