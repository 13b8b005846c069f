using System.Text.Json;
using Microsoft.OpenApi;
using Telemetry.Core;

namespace Telemetry.Api.Hosting;

/// <summary>
/// Reads a request's JSON body in the handler rather than by binding, so a body that is not JSON, or none at all, is
/// answered like any other argument refused (a problem+json naming what is wrong) after the endpoint's filters ran (the
/// audit records it), instead of by the framework before them.
/// </summary>
public static class JsonBody
{
    /// <summary>The body as <typeparamref name="T"/>, or the 400 to answer; <paramref name="expected"/> says what to send.</summary>
    public static async Task<(T? Value, IResult? Problem)> ReadAsync<T>(HttpRequest request, string expected)
        where T : class
    {
        try
        {
            var value = await JsonSerializer.DeserializeAsync<T>(request.Body, TelemetryJson.Options, request.HttpContext.RequestAborted);
            return value is null ? (null, Invalid("body", "send " + expected)) : (value, null);
        }
        catch (JsonException exception)
        {
            return (null, Invalid(exception.Path is null or "$" ? "body" : exception.Path, $"{exception.Message} Send {expected}."));
        }
    }

    /// <summary>
    /// Describes the endpoint's JSON body as <typeparamref name="T"/> in the OpenAPI document, which cannot see a body read
    /// in the handler (<c>Accepts</c> would, but it also has routing refuse other content types before the audit).
    /// </summary>
    public static RouteHandlerBuilder DescribedAs<T>(this RouteHandlerBuilder builder) =>
        builder.AddOpenApiOperationTransformer(async (operation, context, cancellationToken) =>
            operation.RequestBody = new OpenApiRequestBody
            {
                Required = true,
                Content = new Dictionary<string, OpenApiMediaType>
                {
                    ["application/json"] = new() { Schema = await context.GetOrCreateSchemaAsync(typeof(T), null, cancellationToken) },
                },
            });

    private static IResult Invalid(string field, string message) =>
        TypedResults.ValidationProblem(new Dictionary<string, string[]> { [field] = [message] });
}
