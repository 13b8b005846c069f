using System.Net;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Telemetry.Api.Security;

namespace Telemetry.Api.Health;

/// <summary>
/// Readiness at <c>/healthz</c>: 200 when the silo, the store and the listeners are all up, else 503, with each check's
/// status; liveness at <c>/livez</c>: 200 whenever the server answers at all, running no check (a server whose store is
/// away is not ready, and restarting it mends nothing). Each check's word (which names the database file, the series
/// server's address, what went wrong) is for the operator: a caller on the server's own machine, connected directly, or
/// with an admin's token; anyone else, a load balancer's probe from another host say, gets the statuses alone.
/// </summary>
public static class HealthEndpoints
{
    public static IServiceCollection AddTelemetryHealthChecks(this IServiceCollection services)
    {
        services.AddHealthChecks()
            .AddCheck<SiloHealthCheck>("silo")
            .AddCheck<StoreHealthCheck>("store")
            .AddCheck<ListenerHealthCheck>("listeners")
            .AddCheck<ClusterHealthCheck>("cluster")
            .AddCheck<CertificateHealthCheck>("certificate");

        // The checks also run in the background, each change of status logged once (HealthChangeLog).
        services.AddOptions<HealthCheckPublisherOptions>().BindConfiguration(HealthChangeLog.Section)
            .Validate(options => options.Delay >= TimeSpan.Zero, $"{HealthChangeLog.Section}:Delay must not be negative.")
            .ValidateOnStart();
        services.AddSingleton<IHealthCheckPublisher, HealthChangeLog>();
        return services;
    }

    public static IEndpointRouteBuilder MapTelemetryHealthChecks(this IEndpointRouteBuilder routes)
    {
        routes.MapHealthChecks("/healthz", new HealthCheckOptions { ResponseWriter = WriteAsync });
        routes.MapHealthChecks("/livez", new HealthCheckOptions { Predicate = _ => false, ResponseWriter = WriteAsync });
        return routes;
    }

    private static Task WriteAsync(HttpContext context, HealthReport report)
    {
        context.Response.ContentType = "application/json";

        // Not kept by a cache between callers: whose answer it is depends on who asks.
        context.Response.Headers.CacheControl = "no-store";
        var detailed = IsOperator(context);
        var body = new
        {
            status = report.Status.ToString(),
            checks = report.Entries.ToDictionary(
                entry => entry.Key,
                entry => new { status = entry.Value.Status.ToString(), description = detailed ? entry.Value.Description : null }),
        };
        return JsonSerializer.SerializeAsync(context.Response.Body, body, Json, context.RequestAborted);
    }

    private static readonly JsonSerializerOptions Json = new(JsonSerializerOptions.Web) { DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull };

    /// <summary>
    /// One whose token may administer, or a caller on this machine connected directly: a request a proxy forwarded (it
    /// names the client it came from, trusted or not: a proxy on this machine, or a forged <c>X-Forwarded-For:
    /// 127.0.0.1</c>) is from elsewhere.
    /// </summary>
    private static bool IsOperator(HttpContext context) =>
        SmartScopes.AllowsAdministration(context.User)
        || (context.Connection.RemoteIpAddress is { } address
            && IPAddress.IsLoopback(address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address)
            && !ForwardedHeaders.Any(context.Request.Headers.ContainsKey));

    // The headers a proxy names the client by, and the one ASP.NET Core's forwarded headers leave for the address it replaced.
    private static readonly string[] ForwardedHeaders = ["X-Forwarded-For", "Forwarded", "X-Original-For"];
}
