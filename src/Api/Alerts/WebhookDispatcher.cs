using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Options;
using Telemetry.Api.Cluster;
using Telemetry.Core;
using Telemetry.Core.Alerts;
using Telemetry.Core.Storage;
using Telemetry.Ingest;

namespace Telemetry.Api.Alerts;

/// <summary>
/// Delivers alert events to each configured webhook, in order, from the alert store: its position is kept in the store,
/// so an event is delivered at least once across restarts. Each POST carries the event as JSON and a signature,
/// <c>X-Telemetry-Signature: sha256=hex(HMAC-SHA256(secret, timestamp + "." + body))</c>, with the timestamp in
/// <c>X-Telemetry-Timestamp</c>. Failures (network, 408, 429, 5xx) are retried with doubling waits, the events after
/// it waiting, until the event is <see cref="AlertOptions.WebhookGiveUpAfter"/> old; or, once it has failed for
/// <see cref="AlertOptions.WebhookPassOverAfter"/>, until the receiver takes the event after it (it is up, and fails
/// that one event alone: a payload it cannot handle holds no other patient's alerts back).
/// </summary>
public sealed partial class WebhookDispatcher(
    IAlertStore store,
    DeliveryLease lease,
    IOptions<AlertOptions> options,
    IngestInstruments instruments,
    TimeProvider timeProvider,
    ILogger<WebhookDispatcher> logger) : BackgroundService
{
    public const string SignatureHeader = "X-Telemetry-Signature";
    public const string TimestampHeader = "X-Telemetry-Timestamp";
    public const string EventIdHeader = "X-Telemetry-Event-Id";

    private const int PageSize = 100;
    private static readonly TimeSpan PollInterval = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan AttemptTimeout = TimeSpan.FromSeconds(10);

    // Redirects are not followed: a receiver may not send the signed events elsewhere (an address inside the network),
    // and a POST redirected is sent on as a GET without its event. A 3xx is an answer not worth retrying.
    private readonly HttpClient _http = new(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(2), AllowAutoRedirect = false }) { Timeout = AttemptTimeout };
    private readonly List<SemaphoreSlim> _wakeups = [];

    /// <summary>Tells every webhook loop that new events are stored.</summary>
    public void Notify()
    {
        lock (_wakeups)
        {
            foreach (var wakeup in _wakeups)
            {
                if (wakeup.CurrentCount == 0)
                {
                    wakeup.Release();
                }
            }
        }
    }

    public override void Dispose()
    {
        _http.Dispose();
        base.Dispose();
    }

    /// <summary>The signature of <paramref name="body"/> sent at <paramref name="timestamp"/> (Unix seconds), as the header carries it.</summary>
    public static string Sign(string secret, string timestamp, ReadOnlySpan<byte> body)
    {
        var signed = new byte[Encoding.UTF8.GetByteCount(timestamp) + 1 + body.Length];
        var at = Encoding.UTF8.GetBytes(timestamp, signed);
        signed[at++] = (byte)'.';
        body.CopyTo(signed.AsSpan(at));
        return "sha256=" + Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), signed));
    }

    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        Task.WhenAll(options.Value.Webhooks.Select(webhook => RunAsync(webhook, stoppingToken)));

    private async Task RunAsync(WebhookOptions webhook, CancellationToken stoppingToken)
    {
        var wakeup = new SemaphoreSlim(0, 1);
        lock (_wakeups)
        {
            _wakeups.Add(wakeup);
        }

        var consumer = "webhook:" + webhook.Name;
        long position;
        while (true)
        {
            try
            {
                if (await store.ReadCursorAsync(consumer, stoppingToken) is { } delivered)
                {
                    position = delivered;
                }
                else
                {
                    // A new webhook starts from now, not from the whole history; the mark is kept before anything is sent
                    // (at 0 in an empty log: from its first event on).
                    position = await store.LastPositionAsync(stoppingToken);
                    await store.WriteCursorAsync(consumer, position, stoppingToken);
                }

                break;
            }
            catch (Exception exception) when (!stoppingToken.IsCancellationRequested)
            {
                LogStoreFailed(logger, exception, webhook.Name);
                await Task.Delay(PollInterval, timeProvider, stoppingToken);
            }
        }

        var held = true;
        var refusals = new Refusals();
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                // In a cluster one server delivers; one that takes over carries on from the delivered mark.
                if (!await lease.HoldAsync(consumer))
                {
                    held = false;
                    await Task.Delay(PollInterval, timeProvider, stoppingToken);
                    continue;
                }

                if (!held)
                {
                    // Taken (back) over: where the others got to, and the receiver's refusals counted anew.
                    position = await store.ReadCursorAsync(consumer, stoppingToken) ?? position;
                    refusals.Since = null;
                    held = true;
                }

                var events = await store.ReadEventsAsync(position, null, PageSize, stoppingToken);
                foreach (var item in events)
                {
                    // Delivered already, as the next event offered while the one before it was failing.
                    if (item.Position <= position)
                    {
                        continue;
                    }

                    // Renewed before each event, so a server that lost the lease (its retries outlasted it) stops at once.
                    if (!await lease.HoldAsync(consumer))
                    {
                        held = false;
                        break;
                    }

                    var (holding, next) = await DeliverAsync(webhook, consumer, item, refusals, stoppingToken);
                    if (!holding)
                    {
                        held = false;
                        break;
                    }

                    position = next?.Position ?? item.Position;
                    await store.WriteCursorAsync(consumer, position, stoppingToken);
                }

                if (events.Count < PageSize)
                {
                    await wakeup.WaitAsync(PollInterval, stoppingToken);
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
            catch (Exception exception)
            {
                LogStoreFailed(logger, exception, webhook.Name);
                await Task.Delay(PollInterval, timeProvider, stoppingToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        }
    }

    /// <summary>
    /// Delivers (or gives up on) the event. <c>Holding</c> is false when this server lost the delivery lease meanwhile
    /// and must stop; <c>Next</c> is the event after it when that was delivered in its stead (the receiver took it while
    /// refusing this one).
    /// </summary>
    private async Task<(bool Holding, AlertEvent? Next)> DeliverAsync(WebhookOptions webhook, string consumer, AlertEvent item, Refusals refusals, CancellationToken stoppingToken)
    {
        var delay = TimeSpan.FromSeconds(1);
        var maxDelay = TimeSpan.FromSeconds(options.Value.WebhookMaxBackoffSeconds);
        var firstFailed = (DateTimeOffset?)null;
        for (var attempt = 1; ; attempt++)
        {
            string failure;
            try
            {
                var status = await PostAsync(webhook, item, stoppingToken);
                if ((int)status is >= 200 and < 300)
                {
                    refusals.Since = null;
                    instruments.AlertPublished("webhook");
                    return (true, null);
                }

                failure = $"HTTP {(int)status}";
                if (IsMaybeRedeploying(status))
                {
                    // A receiver being deployed, or its credentials or route being changed, answers so for a while:
                    // tried again for that while, not given up at the first answer (nor held for the day an outage is).
                    // The while is the webhook's, from its first such answer since one it took: once it has passed,
                    // each event is given up at its first such answer, and none holds the others back for long.
                    refusals.Since ??= timeProvider.GetUtcNow();
                    if (timeProvider.GetUtcNow() - refusals.Since >= RefusedRetryFor)
                    {
                        GiveUp(webhook, item, attempt, failure);
                        return (true, null);
                    }
                }
                else if (!IsWorthRetrying(status))
                {
                    GiveUp(webhook, item, attempt, failure);
                    return (true, null);
                }
            }
            catch (Exception exception) when (!stoppingToken.IsCancellationRequested)
            {
                failure = exception.GetType().Name;
            }

            // By the event's own time: after a long outage the events too old by then are given up one attempt each, and
            // the webhook comes back to those still worth sending.
            if (timeProvider.GetUtcNow() - item.At >= options.Value.WebhookGiveUpAfter)
            {
                GiveUp(webhook, item, attempt, failure);
                return (true, null);
            }

            // Failing for a while: is it the receiver, or this event? The event after it is offered once; taken, this one
            // is given up (the receiver is up and refuses it alone), and delivery goes on after the one taken.
            firstFailed ??= timeProvider.GetUtcNow();
            if (timeProvider.GetUtcNow() - firstFailed >= options.Value.WebhookPassOverAfter
                && await TryDeliverNextAsync(webhook, item, stoppingToken) is { } next)
            {
                refusals.Since = null;
                GiveUp(webhook, item, attempt, failure + "; the receiver took the event after it");
                return (true, next);
            }

            // The attempt may have taken its whole timeout: the lease is renewed before the wait, not a third of a term in.
            LogRetrying(logger, webhook.Name, item.EventId, attempt, failure, delay);
            if (!await lease.HoldAsync(consumer) || !await WaitHoldingAsync(consumer, delay, stoppingToken))
            {
                return (false, null);
            }

            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, maxDelay.Ticks));
        }
    }

    /// <summary>Offers the receiver the event after <paramref name="item"/>, once; returns it when taken (2xx), null otherwise or when there is none.</summary>
    private async Task<AlertEvent?> TryDeliverNextAsync(WebhookOptions webhook, AlertEvent item, CancellationToken stoppingToken)
    {
        try
        {
            if ((await store.ReadEventsAsync(item.Position, null, 1, stoppingToken)) is not [var next])
            {
                return null;
            }

            if ((int)await PostAsync(webhook, next, stoppingToken) is not (>= 200 and < 300))
            {
                return null;
            }

            instruments.AlertPublished("webhook");
            return next;
        }
        catch (Exception exception) when (!stoppingToken.IsCancellationRequested)
        {
            LogNextFailed(logger, webhook.Name, exception.GetType().Name);
            return null;
        }
    }

    /// <summary>POSTs the event once, signed; returns the receiver's status (only the status is read: a receiver's body, however large, is not).</summary>
    private async Task<HttpStatusCode> PostAsync(WebhookOptions webhook, AlertEvent item, CancellationToken stoppingToken)
    {
        var body = JsonSerializer.SerializeToUtf8Bytes(item, TelemetryJson.Options);
        var timestamp = timeProvider.GetUtcNow().ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture);
        using var request = new HttpRequestMessage(HttpMethod.Post, webhook.Url) { Content = new ByteArrayContent(body) };
        request.Content.Headers.ContentType = new("application/json");
        request.Headers.Add(EventIdHeader, item.EventId);
        request.Headers.Add(TimestampHeader, timestamp);
        request.Headers.Add(SignatureHeader, Sign(webhook.Secret, timestamp, body));
        using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, stoppingToken);
        return response.StatusCode;
    }

    /// <summary>
    /// Waits <paramref name="delay"/> before the next attempt, renewing the delivery lease every third of its term: a
    /// wait longer than the term (the backoff reaches a minute) would let it lapse and another server take the event over
    /// while this one still tries it. False when the lease was lost meanwhile.
    /// </summary>
    private async Task<bool> WaitHoldingAsync(string consumer, TimeSpan delay, CancellationToken stoppingToken)
    {
        var slice = DeliveryLease.Term / 3;
        for (var left = delay; left > TimeSpan.Zero; left -= slice)
        {
            await Task.Delay(left < slice ? left : slice, timeProvider, stoppingToken);
            if (!await lease.HoldAsync(consumer))
            {
                return false;
            }
        }

        return true;
    }

    private void GiveUp(WebhookOptions webhook, AlertEvent item, int attempts, string failure)
    {
        instruments.AlertGivenUp("webhook");
        LogGivenUp(logger, webhook.Name, item.EventId, attempts, failure);
    }

    private static bool IsWorthRetrying(HttpStatusCode status) =>
        status is HttpStatusCode.RequestTimeout or HttpStatusCode.TooManyRequests || (int)status >= 500;

    private static bool IsMaybeRedeploying(HttpStatusCode status) =>
        status is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden or HttpStatusCode.NotFound;

    /// <summary>How long a receiver may answer 401, 403 or 404, taking nothing, before events it so answers are given up.</summary>
    public static readonly TimeSpan RefusedRetryFor = TimeSpan.FromMinutes(15);

    /// <summary>Since when a webhook's receiver has answered 401, 403 or 404 and taken nothing; null when it took the last event.</summary>
    private sealed class Refusals
    {
        public DateTimeOffset? Since { get; set; }
    }

    [LoggerMessage(EventId = 3201, Level = LogLevel.Warning, Message = "Webhook {Webhook}: delivering event {EventId} failed (attempt {Attempt}: {Failure}); retrying in {Delay}")]
    private static partial void LogRetrying(ILogger logger, string webhook, string eventId, int attempt, string failure, TimeSpan delay);

    [LoggerMessage(EventId = 3202, Level = LogLevel.Error, Message = "Webhook {Webhook}: gave up on event {EventId} after {Attempts} attempts ({Failure}); it stays in the alert history")]
    private static partial void LogGivenUp(ILogger logger, string webhook, string eventId, int attempts, string failure);

    [LoggerMessage(EventId = 3204, Level = LogLevel.Debug, Message = "Webhook {Webhook}: offering the next event while one fails did not reach the receiver ({Failure})")]
    private static partial void LogNextFailed(ILogger logger, string webhook, string failure);

    [LoggerMessage(EventId = 3203, Level = LogLevel.Warning, Message = "Webhook {Webhook}: reading the alert store failed; trying again")]
    private static partial void LogStoreFailed(ILogger logger, Exception exception, string webhook);
}
