using System.Text.Json;
using Hl7.Fhir.Model;
using Hl7.Fhir.Serialization;

namespace Telemetry.Api.Fhir;

/// <summary>A FHIR resource as the response, in FHIR's JSON (<c>application/fhir+json</c>).</summary>
public sealed class FhirResult(Resource resource, int statusCode = StatusCodes.Status200OK) : IResult, IStatusCodeHttpResult
{
    public const string ContentType = "application/fhir+json";

    /// <summary>Firely's serializer settings for R4, shared by every response.</summary>
    public static JsonSerializerOptions SerializerOptions { get; } = new JsonSerializerOptions().ForFhir(ModelInfo.ModelInspector);

    /// <summary>The same settings, refusing anything that is not valid FHIR when reading.</summary>
    public static JsonSerializerOptions StrictOptions { get; } = new JsonSerializerOptions().ForFhir(ModelInfo.ModelInspector).UsingMode(DeserializationMode.Strict);

    public Resource Resource { get; } = resource;

    public int StatusCode { get; } = statusCode;

    int? IStatusCodeHttpResult.StatusCode => StatusCode;

    public async System.Threading.Tasks.Task ExecuteAsync(HttpContext httpContext)
    {
        var response = httpContext.Response;
        response.StatusCode = StatusCode;
        response.ContentType = ContentType + "; charset=utf-8";
        await JsonSerializer.SerializeAsync(response.Body, Resource, Resource.GetType(), SerializerOptions, httpContext.RequestAborted);
    }

    /// <summary>An OperationOutcome with one error issue.</summary>
    public static FhirResult Error(int statusCode, OperationOutcome.IssueType type, string diagnostics) =>
        new(new OperationOutcome
        {
            Issue =
            {
                new OperationOutcome.IssueComponent
                {
                    Severity = OperationOutcome.IssueSeverity.Error,
                    Code = type,
                    Diagnostics = diagnostics,
                },
            },
        }, statusCode);

    /// <summary>400: the request is not valid (a parameter named in <paramref name="diagnostics"/>).</summary>
    public static FhirResult Invalid(string diagnostics) => Error(StatusCodes.Status400BadRequest, OperationOutcome.IssueType.Invalid, diagnostics);

    /// <summary>400: valid FHIR, but something this server does not support.</summary>
    public static FhirResult NotSupported(string diagnostics) => Error(StatusCodes.Status400BadRequest, OperationOutcome.IssueType.NotSupported, diagnostics);
}
