using System.Globalization;
using System.Security.Claims;
using Microsoft.Extensions.Options;
using Telemetry.Api.Security;

namespace Telemetry.Api.Hosting;

/// <summary>
/// What every server-sent event stream of the API starts with, how often it proves it is alive, and how it keeps to
/// what its reader may see: it asks again every so often, and ends when the reader's token expires.
/// </summary>
public static class EventStream
{
    /// <summary>A comment line at least this often keeps proxies and clients from closing a quiet stream.</summary>
    public static readonly TimeSpan KeepAliveInterval = TimeSpan.FromSeconds(15);

    /// <summary>Sends the headers (no caching, no proxy buffering) and a first comment naming the stream.</summary>
    public static async Task BeginAsync(HttpResponse response, string name, CancellationToken cancellationToken)
    {
        response.ContentType = "text/event-stream";
        response.Headers.CacheControl = "no-cache, no-store";
        response.Headers["X-Accel-Buffering"] = "no";
        await response.WriteAsync($": {name}\n\n", cancellationToken);
        await response.Body.FlushAsync(cancellationToken);
    }

    /// <summary>
    /// What a stream runs until: its reader leaving, or the server beginning to stop. A stream open at a graceful
    /// shutdown would otherwise hold the web server's stop until the host's shutdown timeout, leaving no time for the
    /// ingest drain, the grains' deactivation and the stores after it; ended, its reader reconnects (to this server once
    /// it is back, or to another).
    /// </summary>
    public static CancellationTokenSource RunUntilStopping(HttpContext context) =>
        CancellationTokenSource.CreateLinkedTokenSource(
            context.RequestAborted, context.RequestServices.GetRequiredService<IHostApplicationLifetime>().ApplicationStopping);

    /// <summary>How often a stream asks again whom its reader may see (<see cref="AuthOptions.StreamAccessCheckSeconds"/>).</summary>
    public static TimeSpan AccessCheckInterval(HttpContext context) =>
        TimeSpan.FromSeconds(context.RequestServices.GetRequiredService<IOptions<AuthOptions>>().Value.StreamAccessCheckSeconds);

    /// <summary>When the caller's token stops being valid: a JWT's <c>exp</c>; never for the admin token.</summary>
    public static DateTimeOffset? ExpiryOf(ClaimsPrincipal user) =>
        long.TryParse(user.FindFirst("exp")?.Value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var seconds)
            ? DateTimeOffset.FromUnixTimeSeconds(seconds)
            : null;

    /// <summary>Sends the event that ends a stream: <c>expired</c> (the token), <c>revoked</c> (the reader's access).</summary>
    public static async Task EndAsync(HttpResponse response, string reason, CancellationToken cancellationToken)
    {
        await response.WriteAsync($"event: {reason}\ndata: {{}}\n\n", cancellationToken);
        await response.Body.FlushAsync(cancellationToken);
    }
}
