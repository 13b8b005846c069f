namespace Telemetry.Api.Hosting;

/// <summary>What every server-sent event stream of the API starts with, and how often it proves it is alive.</summary>
public static class EventStream
{
    /// <summary>A comment line at least this often keeps proxies and clients from closing a quiet stream.</summary>
    public static readonly TimeSpan KeepAliveInterval = TimeSpan.FromSeconds(15);

    /// <summary>Sends the headers (no caching, no proxy buffering) and a first comment naming the stream.</summary>
    public static async Task BeginAsync(HttpResponse response, string name, CancellationToken cancellationToken)
    {
        response.ContentType = "text/event-stream";
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no";
        await response.WriteAsync($": {name}\n\n", cancellationToken);
        await response.Body.FlushAsync(cancellationToken);
    }
}
