using System.Globalization;
using System.Text.Json;
using Telemetry.Core;
using Telemetry.Core.Alerts;
using Telemetry.Core.Storage;

namespace Telemetry.Api.Alerts;

/// <summary>
/// A live stream of alert events as server-sent events (<c>text/event-stream</c>), of one patient or of all. Each event's
/// id is its store position: a client that reconnects with <c>Last-Event-ID</c> (or <c>?after=</c>) gets what it
/// missed from the store before the live events, with none twice.
/// </summary>
public static class AlertEventStream
{
    private const int CatchUpPage = 500;

    public static async Task RunAsync(HttpContext context, string? patientId, IReadOnlySet<string>? visible, IAlertStore store, AlertBroadcaster broadcaster)
    {
        var cancellationToken = context.RequestAborted;
        var after = StartPosition(context.Request);
        if (after is null)
        {
            await TypedResults.ValidationProblem(new Dictionary<string, string[]> { ["after"] = ["a stream position: a whole number, 0 or more"] }).ExecuteAsync(context);
            return;
        }

        // Subscribed before the catch-up read, so nothing stored in between is missed; what both deliver is sent once.
        using var subscription = broadcaster.Subscribe(patientId);
        var response = context.Response;
        await Hosting.EventStream.BeginAsync(response, "telemetry alert stream", cancellationToken);

        var position = after.Value == -1 ? await store.LastPositionAsync(cancellationToken) : after.Value;
        try
        {
            position = await CatchUpAsync(response, store, patientId, visible, position, cancellationToken);
            while (!cancellationToken.IsCancellationRequested)
            {
                using var keepAlive = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                keepAlive.CancelAfter(Hosting.EventStream.KeepAliveInterval);
                bool available;
                try
                {
                    available = await subscription.Events.WaitToReadAsync(keepAlive.Token);
                }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                {
                    await response.WriteAsync(": keep-alive\n\n", cancellationToken);
                    await response.Body.FlushAsync(cancellationToken);
                    continue;
                }

                if (!available)
                {
                    return;
                }

                while (subscription.Events.TryRead(out var item))
                {
                    if (item.Position > position)
                    {
                        if (visible is null || visible.Contains(item.PatientId))
                        {
                            await WriteAsync(response, item, cancellationToken);
                        }

                        position = item.Position;
                    }
                }

                if (subscription.TakeOverflow())
                {
                    position = await CatchUpAsync(response, store, patientId, visible, position, cancellationToken);
                }

                await response.Body.FlushAsync(cancellationToken);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // The client went away.
        }
    }

    /// <summary>Where to start: after Last-Event-ID or ?after=, or (-1) from now. Null when either is malformed.</summary>
    private static long? StartPosition(HttpRequest request)
    {
        var text = request.Headers["Last-Event-ID"].FirstOrDefault() ?? request.Query["after"].FirstOrDefault();
        if (text is null)
        {
            return -1;
        }

        return long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var position) ? position : null;
    }

    private static async Task<long> CatchUpAsync(
        HttpResponse response, IAlertStore store, string? patientId, IReadOnlySet<string>? visible, long position, CancellationToken cancellationToken)
    {
        while (true)
        {
            var events = await store.ReadEventsAsync(position, patientId, CatchUpPage, cancellationToken);
            foreach (var item in events)
            {
                if (visible is null || visible.Contains(item.PatientId))
                {
                    await WriteAsync(response, item, cancellationToken);
                }

                position = item.Position;
            }

            await response.Body.FlushAsync(cancellationToken);
            if (events.Count < CatchUpPage)
            {
                return position;
            }
        }
    }

    private static async Task WriteAsync(HttpResponse response, AlertEvent item, CancellationToken cancellationToken)
    {
        var json = JsonSerializer.Serialize(item, TelemetryJson.Options);
        await response.WriteAsync(string.Create(CultureInfo.InvariantCulture, $"id: {item.Position}\nevent: alert\ndata: {json}\n\n"), cancellationToken);
    }
}
