using Telemetry.Api.Audit;
using Telemetry.Api.Hosting;
using Telemetry.Api.Patients;
using Telemetry.Core;
using Telemetry.Core.Storage;
using Telemetry.Storage.Audit;

namespace Telemetry.Api.Security;

/// <summary>Care teams: which patients a team looks after. Clinicians belong to teams by their token's <c>care_team</c> claims.</summary>
public static class CareTeamEndpoints
{
    public const int MaxPatients = 10_000;

    public static IEndpointRouteBuilder MapCareTeamEndpoints(this IEndpointRouteBuilder routes)
    {
        // Audited: a change of who may read a patient's record is recorded for each patient it gives or takes away.
        var teams = routes.MapGroup("/api/care-teams").RequireAuthorization(TelemetryAuthentication.AdminPolicy).RequireRateLimiting(TelemetryAuthentication.ApiRateLimit)
            .Audited().WithTags("Access");
        teams.MapGet("/{teamId}", async (string teamId, CareTeams careTeams, CancellationToken cancellationToken) =>
            Identifier.IsValid(teamId)
                ? Results.Ok(new CareTeam(teamId, [.. (await careTeams.GetAsync(teamId, cancellationToken)).Order(StringComparer.Ordinal)]))
                : Invalid("teamId", Identifier.Shape))
            .WithSummary("The patients a care team looks after");
        teams.MapPut("/{teamId}", PutAsync).DescribedAs<CareTeamRequest>().WithSummary("Sets the whole of a care team's patients (an empty list removes the team)");
        return routes;
    }

    private static async Task<IResult> PutAsync(
        string teamId, HttpContext context, CareTeams careTeams, IPatientDirectory directory, AuditLog audit, CancellationToken cancellationToken)
    {
        if (!Identifier.IsValid(teamId))
        {
            return Invalid("teamId", Identifier.Shape);
        }

        var (request, problem) = await JsonBody.ReadAsync<CareTeamRequest>(context.Request, """{"patients":["…"]}""");
        if (request is null)
        {
            return problem!;
        }

        var distinct = request.Patients is { Count: <= MaxPatients } patients
            ? patients.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList()
            : null;
        foreach (var patient in distinct ?? [])
        {
            if (!await PatientIds.MayNameAsync(patient, directory, cancellationToken))
            {
                distinct = null;
                break;
            }
        }

        if (distinct is null)
        {
            return Invalid("patients", $"a list of at most {MaxPatients} patient ids ({Identifier.PatientShape})");
        }

        var before = await careTeams.SetAsync(teamId, distinct, cancellationToken);
        await AuditFilter.RecordEachAsync(audit, context, distinct.Except(before, StringComparer.Ordinal).Concat(before.Except(distinct, StringComparer.Ordinal)));
        return Results.Ok(new CareTeam(teamId, distinct));
    }

    private static IResult Invalid(string field, string expected) =>
        TypedResults.ValidationProblem(new Dictionary<string, string[]> { [field] = [expected] });
}

/// <summary>A care team and the patients it looks after.</summary>
public sealed record CareTeam(string TeamId, IReadOnlyList<string> Patients);

/// <summary>The body of <c>PUT /api/care-teams/{teamId}</c>.</summary>
public sealed record CareTeamRequest(IReadOnlyList<string>? Patients);
