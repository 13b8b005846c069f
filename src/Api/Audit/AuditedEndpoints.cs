using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Authorization.Policy;
using Telemetry.Storage.Audit;

namespace Telemetry.Api.Audit;

/// <summary>Marks an endpoint whose every request is audited, so a refusal before it runs is recorded too.</summary>
public sealed class AuditedEndpoint
{
    public static readonly AuditedEndpoint Instance = new();

    private AuditedEndpoint()
    {
    }
}

public static class AuditedEndpoints
{
    /// <summary>
    /// Audits every request of the endpoints <paramref name="builder"/> makes: those they answer (<see cref="AuditFilter"/>)
    /// and those refused before they run; a request whose arguments could not be bound is answered naming them
    /// (<see cref="Hosting.UnboundArgumentsFilter"/>, inside the audit, which records its 400).
    /// </summary>
    public static TBuilder Audited<TBuilder>(this TBuilder builder)
        where TBuilder : IEndpointConventionBuilder =>
        builder.AddEndpointFilter<TBuilder, AuditFilter>().AddEndpointFilter<TBuilder, Hosting.UnboundArgumentsFilter>().WithMetadata(AuditedEndpoint.Instance);
}

/// <summary>
/// Records the requests to audited endpoints that authorization refuses before they run (a token refused: 401; a role
/// without the right: 403), as the FHIR endpoints' own guard records theirs, by the same rule
/// (<see cref="AuditFilter.RecordRequestAsync"/>: a request with no token at all is not recorded); then answers them as
/// it would have.
/// </summary>
public sealed class AuditedAuthorizationResultHandler(AuditLog audit) : IAuthorizationMiddlewareResultHandler
{
    private readonly AuthorizationMiddlewareResultHandler _answer = new();

    public async Task HandleAsync(RequestDelegate next, HttpContext context, AuthorizationPolicy policy, PolicyAuthorizationResult authorizeResult)
    {
        if ((authorizeResult.Forbidden || authorizeResult.Challenged) && context.GetEndpoint()?.Metadata.GetMetadata<AuditedEndpoint>() is not null)
        {
            await AuditFilter.RecordRequestAsync(audit, context, authorizeResult.Challenged ? StatusCodes.Status401Unauthorized : StatusCodes.Status403Forbidden);
        }

        await _answer.HandleAsync(next, context, policy, authorizeResult);
    }
}
