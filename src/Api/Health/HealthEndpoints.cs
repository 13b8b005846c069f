using System.Text.Json;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Telemetry.Api.Health;

/// <summary>Readiness at <c>/healthz</c>: 200 when the silo, the store and the listeners are all up, else 503, with each check's word.</summary>
public static class HealthEndpoints
{
    public static IServiceCollection AddTelemetryHealthChecks(this IServiceCollection services)
    {
        services.AddHealthChecks()
            .AddCheck<SiloHealthCheck>("silo")
            .AddCheck<StoreHealthCheck>("store")
            .AddCheck<ListenerHealthCheck>("listeners")
            .AddCheck<ClusterHealthCheck>("cluster");
        return services;
    }

    public static IEndpointRouteBuilder MapTelemetryHealthChecks(this IEndpointRouteBuilder routes)
    {
        routes.MapHealthChecks("/healthz", new HealthCheckOptions { ResponseWriter = WriteAsync });
        return routes;
    }

    private static Task WriteAsync(HttpContext context, HealthReport report)
    {
        context.Response.ContentType = "application/json";
        var body = new
        {
            status = report.Status.ToString(),
            checks = report.Entries.ToDictionary(
                entry => entry.Key,
                entry => new { status = entry.Value.Status.ToString(), description = entry.Value.Description }),
        };
        return JsonSerializer.SerializeAsync(context.Response.Body, body, JsonSerializerOptions.Web, context.RequestAborted);
    }
}
