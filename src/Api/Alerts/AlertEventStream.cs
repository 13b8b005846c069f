using System.Globalization;
using System.Text.Json;
using Telemetry.Api.Audit;
using Telemetry.Api.Hosting;
using Telemetry.Api.Security;
using Telemetry.Core;
using Telemetry.Core.Alerts;
using Telemetry.Core.Storage;
using Telemetry.Storage;
using Telemetry.Storage.Audit;

namespace Telemetry.Api.Alerts;

/// <summary>
/// A live stream of alert events as server-sent events (<c>text/event-stream</c>), of one patient or of all. Each event's
/// id is its store position: a client that reconnects with <c>Last-Event-ID</c> (or <c>?after=</c>) gets what it
/// missed from the store before the live events, with none twice. Like the live vitals stream, it asks again every so
/// often whom its reader may see (a one-patient stream whose reader lost access ends with <c>revoked</c>; one across
/// patients drops and takes in patients as care teams change) and ends with <c>expired</c> when the reader's token
/// does. A stream across patients records each patient in the audit log as it first sends one of their alerts.
/// </summary>
public static class AlertEventStream
{
    private const int CatchUpPage = 500;

    public static Task RunAsync(HttpContext context, string? patientId, IAlertStore store, AlertBroadcaster broadcaster, AlertStreamSlots slots) =>
        slots.RunAsync(context, () => StreamAsync(context, patientId, store, broadcaster));

    private static async Task StreamAsync(HttpContext context, string? patientId, IAlertStore store, AlertBroadcaster broadcaster)
    {
        using var running = EventStream.RunUntilStopping(context);
        var cancellationToken = running.Token;
        var after = StartPosition(context.Request);
        if (after is null)
        {
            await TypedResults.ValidationProblem(new Dictionary<string, string[]> { ["after"] = ["a stream position: a whole number, 0 or more"] }).ExecuteAsync(context);
            return;
        }

        var reader = new Reader(context, patientId);
        var timeProvider = context.RequestServices.GetRequiredService<TimeProvider>();
        var accessCheckInterval = EventStream.AccessCheckInterval(context);
        var expires = EventStream.ExpiryOf(context.User);
        if (!await reader.CheckAccessAsync(cancellationToken))
        {
            await TypedResults.Forbid().ExecuteAsync(context);
            return;
        }

        // Subscribed before the catch-up read, so nothing stored in between is missed; what both deliver is sent once.
        using var subscription = broadcaster.Subscribe(patientId);
        var response = context.Response;
        await EventStream.BeginAsync(response, "telemetry alert stream", cancellationToken);

        var last = await store.LastPositionAsync(cancellationToken);
        var position = after.Value == -1 ? last : after.Value;
        if (position > last)
        {
            // A position the store has not reached: it was restored from a backup, or started over. Every event would
            // be taken for one already sent; the client is told to read the alerts anew, and the stream goes on from now.
            // With the position as its id, so that a client reconnecting before the next event resumes from it.
            await response.WriteAsync(string.Create(CultureInfo.InvariantCulture, $"id: {last}\nevent: reset\ndata: {{\"position\":{last}}}\n\n"), cancellationToken);
            await response.Body.FlushAsync(cancellationToken);
            position = last;
        }

        var checkedAt = timeProvider.GetTimestamp();
        var quietSince = timeProvider.GetTimestamp();
        try
        {
            position = await CatchUpAsync(reader, store, patientId, position, cancellationToken);
            reader.CaughtUp(position);
            while (!cancellationToken.IsCancellationRequested)
            {
                if (expires is { } end && timeProvider.GetUtcNow() >= end)
                {
                    await EventStream.EndAsync(response, "expired", cancellationToken);
                    return;
                }

                if (timeProvider.GetElapsedTime(checkedAt) >= accessCheckInterval)
                {
                    if (!await reader.CheckAccessAsync(cancellationToken))
                    {
                        await EventStream.EndAsync(response, "revoked", cancellationToken);
                        return;
                    }

                    checkedAt = timeProvider.GetTimestamp();
                }

                // Woken by an event, or by the first of: the keep-alive, the next access check, the token's expiry.
                var wait = Min(
                    EventStream.KeepAliveInterval - timeProvider.GetElapsedTime(quietSince),
                    accessCheckInterval - timeProvider.GetElapsedTime(checkedAt),
                    expires is { } expiry ? expiry - timeProvider.GetUtcNow() : Timeout.InfiniteTimeSpan);
                using var woken = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                woken.CancelAfter(wait);
                bool available;
                try
                {
                    available = await subscription.Events.WaitToReadAsync(woken.Token);
                }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                {
                    if (timeProvider.GetElapsedTime(quietSince) >= EventStream.KeepAliveInterval)
                    {
                        await response.WriteAsync(": keep-alive\n\n", cancellationToken);
                        await response.Body.FlushAsync(cancellationToken);
                        quietSince = timeProvider.GetTimestamp();
                    }

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
                        await reader.WriteAsync(item, item.Position, cancellationToken);
                        position = item.Position;
                    }
                    else if (reader.IsLate(item.Position))
                    {
                        // Handed on after events stored behind it (when the log could not be read in time, or history
                        // handed on again after a crash: see AlertBroadcaster): sent all the same, under the highest id
                        // sent, so that a client resuming from its last id misses nothing sent before.
                        await reader.WriteAsync(item, position, cancellationToken);
                    }
                }

                if (subscription.TakeOverflow())
                {
                    position = await CatchUpAsync(reader, store, patientId, position, cancellationToken);
                }

                await response.Body.FlushAsync(cancellationToken);
                quietSince = timeProvider.GetTimestamp();
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // The client went away, or the server is stopping.
        }
    }

    /// <summary>The shortest of the waits, none below zero; infinite ones count as none.</summary>
    private static TimeSpan Min(params ReadOnlySpan<TimeSpan> waits)
    {
        var shortest = Timeout.InfiniteTimeSpan;
        foreach (var wait in waits)
        {
            if (wait != Timeout.InfiniteTimeSpan && (shortest == Timeout.InfiniteTimeSpan || wait < shortest))
            {
                shortest = wait;
            }
        }

        return shortest == Timeout.InfiniteTimeSpan || shortest > TimeSpan.Zero ? shortest : TimeSpan.Zero;
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

    private static async Task<long> CatchUpAsync(Reader reader, IAlertStore store, string? patientId, long position, CancellationToken cancellationToken)
    {
        while (true)
        {
            var events = await store.ReadEventsAsync(position, patientId, CatchUpPage, cancellationToken);
            foreach (var item in events)
            {
                await reader.WriteAsync(item, item.Position, cancellationToken);
                position = item.Position;
            }

            await reader.Response.Body.FlushAsync(cancellationToken);
            if (events.Count < CatchUpPage)
            {
                return position;
            }
        }
    }

    /// <summary>The stream's reader: whom they may see, and which patients' alerts the stream has recorded reading.</summary>
    private sealed class Reader(HttpContext context, string? patientId)
    {
        private readonly PatientAccess _access = context.RequestServices.GetRequiredService<PatientAccess>();
        private readonly AuditLog _audit = context.RequestServices.GetRequiredService<AuditLog>();

        // Across patients: those the reader may see (null: every patient, for an admin), and those recorded so far.
        private IReadOnlySet<string>? _visible;
        private readonly HashSet<string> _recorded = new(StringComparer.Ordinal);

        // What the store's catch-up covered (every event through it was read from the store), and the positions sent
        // live since, the latest LateWindow of them: a live event behind the highest sent is sent if it is neither.
        private const int LateWindow = 4_096;
        private long _caughtUpTo = long.MaxValue;
        private readonly HashSet<long> _sentLive = [];
        private readonly Queue<long> _sentOrder = new();

        public HttpResponse Response => context.Response;

        /// <summary>
        /// Asks again whom the reader may see; false when the reader of a one-patient stream may no longer read the
        /// patient (the stream ends).
        /// </summary>
        public async Task<bool> CheckAccessAsync(CancellationToken cancellationToken)
        {
            if (patientId is not null)
            {
                return await _access.AllowsAsync(context.User, patientId, PatientRight.Read, cancellationToken);
            }

            _visible = await _access.ReadablePatientsAsync(context.User, cancellationToken);
            return true;
        }

        /// <summary>
        /// The first catch-up from the store has sent every event through <paramref name="position"/>. (One after an
        /// overflow reads only after the highest position sent, so it does not move this on.)
        /// </summary>
        public void CaughtUp(long position) => _caughtUpTo = position;

        /// <summary>Whether an event behind the highest position sent has not been sent: the catch-up did not cover it, nor was it sent live.</summary>
        public bool IsLate(long position) =>
            position > _caughtUpTo && !_sentLive.Contains(position) && (_sentOrder.Count < LateWindow || position > _sentOrder.Peek());

        /// <summary>
        /// Sends <paramref name="item"/> under the SSE id <paramref name="id"/> if the reader may see its patient, recording
        /// a new patient first.
        /// </summary>
        public async Task WriteAsync(AlertEvent item, long id, CancellationToken cancellationToken)
        {
            if (item.Position > _caughtUpTo && _sentLive.Add(item.Position))
            {
                _sentOrder.Enqueue(item.Position);
                if (_sentOrder.Count > LateWindow)
                {
                    _sentLive.Remove(_sentOrder.Dequeue());
                }
            }

            if (_visible is not null && !_visible.Contains(item.PatientId))
            {
                return;
            }

            if (patientId is null && _recorded.Add(item.PatientId))
            {
                // The request's own record names no patient: each one whose alerts go out is recorded beside it.
                await AuditFilter.RecordAsync(_audit, context, item.PatientId, StatusCodes.Status200OK);
            }

            var json = JsonSerializer.Serialize(item, TelemetryJson.Options);
            await context.Response.WriteAsync(string.Create(CultureInfo.InvariantCulture, $"id: {id}\nevent: alert\ndata: {json}\n\n"), cancellationToken);
        }
    }
}
