namespace Telemetry.Api.Security;

/// <summary>Lets a request through only with the admin bearer token; otherwise 401 problem+json.</summary>
public sealed class AdminAuthorizationFilter(AdminToken adminToken) : IEndpointFilter
{
    public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var header = context.HttpContext.Request.Headers.Authorization.ToString();
        const string Scheme = "Bearer ";
        if (!header.StartsWith(Scheme, StringComparison.OrdinalIgnoreCase) || !adminToken.Matches(header[Scheme.Length..].Trim()))
        {
            context.HttpContext.Response.Headers.WWWAuthenticate = "Bearer";
            return TypedResults.Problem(
                statusCode: StatusCodes.Status401Unauthorized,
                title: "Unauthorized",
                detail: "Send the admin token as 'Authorization: Bearer <token>'.");
        }

        return await next(context);
    }
}
