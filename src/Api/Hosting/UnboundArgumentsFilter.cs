using System.Globalization;
using System.Reflection;
using Microsoft.AspNetCore.Mvc;

namespace Telemetry.Api.Hosting;

/// <summary>
/// Names the query parameters a request's arguments could not be bound from (a time that is not one, a '+' offset sent
/// unencoded, which arrives as a space; a number that is not one): the framework answers such a request 400 with no
/// word of which parameter, before its handler runs. A filter sees that answer as the status already set when it is
/// called; this one answers instead with a validation problem naming each query parameter whose value does not read as
/// its type, and what it takes.
/// </summary>
public sealed class UnboundArgumentsFilter : IEndpointFilter
{
    public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var http = context.HttpContext;
        var unbound = http.Response.StatusCode == StatusCodes.Status400BadRequest && !http.Response.HasStarted;

        // The filters after this one still run (the access check answers 403 for a patient not the caller's, before any
        // word on its arguments); only the framework's own empty answer is replaced.
        var result = await next(context);
        if (!unbound || http.Response.HasStarted || result is not (null or Microsoft.AspNetCore.Http.HttpResults.EmptyHttpResult))
        {
            return result;
        }

        var errors = new Dictionary<string, string[]>(StringComparer.Ordinal);
        foreach (var parameter in http.GetEndpoint()?.Metadata.GetMetadata<MethodInfo>()?.GetParameters() ?? [])
        {
            var name = parameter.GetCustomAttribute<FromQueryAttribute>()?.Name ?? parameter.Name;
            var type = Nullable.GetUnderlyingType(parameter.ParameterType) ?? parameter.ParameterType;
            if (name is not null && Expected(type) is { } expected && http.Request.Query.TryGetValue(name, out var values)
                && values.Any(value => !Reads(type, value)))
            {
                errors[name] = [expected];
            }
        }

        return errors.Count > 0
            ? TypedResults.ValidationProblem(errors)
            : TypedResults.Problem(statusCode: StatusCodes.Status400BadRequest, title: "Bad request", detail: "An argument of the request could not be read.");
    }

    /// <summary>What a parameter of <paramref name="type"/> takes, for the types the endpoints bind from the query; null for others.</summary>
    private static string? Expected(Type type) =>
        type == typeof(DateTimeOffset) ? "an ISO 8601 time such as 2026-11-24T10:00:00Z (an offset's '+' written %2B)"
        : type == typeof(DateOnly) ? "a date such as 2026-11-24"
        : type == typeof(int) || type == typeof(long) ? "a whole number"
        : type == typeof(bool) ? "true or false"
        : null;

    private static bool Reads(Type type, string? value) =>
        type == typeof(DateTimeOffset) ? DateTimeOffset.TryParse(value, CultureInfo.InvariantCulture, out _)
        : type == typeof(DateOnly) ? DateOnly.TryParse(value, CultureInfo.InvariantCulture, out _)
        : type == typeof(int) ? int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out _)
        : type == typeof(long) ? long.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out _)
        : type != typeof(bool) || bool.TryParse(value, out _);
}
