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
/// it waiting, until the event is <see cref="AlertOptions.WebhookGiveUpAfter"/> old; or, for an event answered 500 for
/// <see cref="AlertOptions.WebhookPassOverAfter"/>, until the receiver takes another patient's event while refusing
/// this one again (it is up, and fails this event alone: a patient it does not know, a payload it trips on, holds no
/// other patient's alerts back).
/// </summary>
public sealed partial class WebhookDispatcher(
    IAlertStore store,
    DeliveryLease lease,
    IOptions<AlertOptions> options,
    IngestInstruments instruments,
    IAuditTrail audit,
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
        var passOver = new PassOver();
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
                    passOver.DeliveredAhead.Clear();
                    passOver.RecordedAhead.Clear();
                    held = true;
                }

                var events = await store.ReadEventsAsync(position, null, PageSize, stoppingToken);
                foreach (var item in events)
                {
                    // Renewed before each event, so a server that lost the lease (its retries outlasted it) stops at once.
                    if (!await lease.HoldAsync(consumer))
                    {
                        held = false;
                        break;
                    }

                    // An event offered ahead of its turn (see TryPassOverAsync) was taken then: not sent twice.
                    if (passOver.DeliveredAhead.Remove(item.Position))
                    {
                        passOver.RecordedAhead.Remove(item.Position);
                    }
                    else if (!await DeliverAsync(webhook, consumer, item, refusals, passOver, stoppingToken))
                    {
                        held = false;
                        break;
                    }

                    position = item.Position;
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

    /// <summary>Delivers (or gives up on) the event; false when this server lost the delivery lease meanwhile and must stop.</summary>
    private async Task<bool> DeliverAsync(WebhookOptions webhook, string consumer, AlertEvent item, Refusals refusals, PassOver passOver, CancellationToken stoppingToken)
    {
        var delay = TimeSpan.FromSeconds(1);
        var maxDelay = TimeSpan.FromSeconds(options.Value.WebhookMaxBackoffSeconds);
        var firstFailed = (DateTimeOffset?)null;
        if (!passOver.RecordedAhead.Remove(item.Position))
        {
            await RecordAsync(webhook, item);
        }
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
                    return true;
                }

                failure = $"HTTP {(int)status}";

                // A 500 may be this event's alone; a receiver's outage answers 502, 503, 504 or nothing, and is waited out.
                if (status == HttpStatusCode.InternalServerError)
                {
                    firstFailed ??= timeProvider.GetUtcNow();
                    if (passOver.Due(item.PatientId, firstFailed.Value, attempt, timeProvider.GetUtcNow(), options.Value.WebhookPassOverAfter))
                    {
                        switch (await TryPassOverAsync(webhook, consumer, item, passOver, stoppingToken))
                        {
                            case PassOverOutcome.LeaseLost:
                                return false;
                            case PassOverOutcome.PassedOver:
                                refusals.Since = null;
                                GiveUp(webhook, item, attempt + 1, failure + ", again after the receiver took another patient's event");
                                return true;
                            case PassOverOutcome.Delivered:
                                refusals.Since = null;
                                instruments.AlertPublished("webhook");
                                return true;
                        }
                    }
                }
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
                        return true;
                    }
                }
                else if (!IsWorthRetrying(status))
                {
                    GiveUp(webhook, item, attempt, failure);
                    return true;
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
                return true;
            }

            // The attempt may have taken its whole timeout: the lease is renewed before the wait, not a third of a term in.
            LogRetrying(logger, webhook.Name, item.EventId, attempt, failure, delay);
            if (!await lease.HoldAsync(consumer) || !await WaitHoldingAsync(consumer, delay, stoppingToken))
            {
                return false;
            }

            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, maxDelay.Ticks));
        }
    }

    /// <summary>
    /// Tells a receiver that refuses one event from one that is down: offers it the next event of another patient
    /// (<paramref name="item"/>'s own later events, an escalation or a clear, would be refused alike) and, if it takes
    /// that, offers <paramref name="item"/> once more. Refused again, <paramref name="item"/> is passed over; taken, it
    /// is delivered after all (the receiver was flapping). The event taken ahead of its turn is not sent again when its
    /// turn comes (unless the delivery changes hands meanwhile: at least once).
    /// </summary>
    private async Task<PassOverOutcome> TryPassOverAsync(WebhookOptions webhook, string consumer, AlertEvent item, PassOver passOver, CancellationToken stoppingToken)
    {
        AlertEvent? other;
        try
        {
            other = (await store.ReadEventsAsync(item.Position, null, PageSize, stoppingToken))
                .FirstOrDefault(later => !string.Equals(later.PatientId, item.PatientId, StringComparison.Ordinal) && !passOver.DeliveredAhead.Contains(later.Position));
        }
        catch (Exception exception) when (!stoppingToken.IsCancellationRequested)
        {
            LogStoreFailed(logger, exception, webhook.Name);
            return PassOverOutcome.NotYet;
        }

        if (other is null)
        {
            // No other patient's event waits behind it: it holds nobody back.
            return PassOverOutcome.NotYet;
        }

        // Each POST may take its whole timeout: the lease is renewed before each.
        if (!await lease.HoldAsync(consumer))
        {
            return PassOverOutcome.LeaseLost;
        }

        // Offered at each pass-over until it is taken, and in its own turn after: recorded once.
        if (!passOver.RecordedAhead.Contains(other.Position))
        {
            await RecordAsync(webhook, other);
            passOver.RecordedAhead.Add(other.Position);
        }

        var taken = await TryPostAsync(webhook, other, stoppingToken);
        LogPassOverProbe(logger, webhook.Name, item.EventId, other.EventId, taken is { } status ? $"HTTP {(int)status}" : "no answer");
        if ((int?)taken is not (>= 200 and < 300))
        {
            return PassOverOutcome.NotYet;
        }

        passOver.DeliveredAhead.Add(other.Position);
        instruments.AlertPublished("webhook");
        if (!await lease.HoldAsync(consumer))
        {
            return PassOverOutcome.LeaseLost;
        }

        var again = await TryPostAsync(webhook, item, stoppingToken);
        if ((int?)again is >= 200 and < 300)
        {
            return PassOverOutcome.Delivered;
        }

        passOver.Passed(item.PatientId, timeProvider.GetUtcNow());
        return PassOverOutcome.PassedOver;
    }

    /// <summary>
    /// Records that the webhook's receiver is sent the patient's alert event, once, before its first attempt: a record
    /// that cannot be written throws, and the event waits for the next pass (nothing goes out unrecorded).
    /// </summary>
    private Task RecordAsync(WebhookOptions webhook, AlertEvent item) =>
        audit.RecordAsync("webhook:" + webhook.Name, "none", item.PatientId, $"POST alert event {item.EventId} to webhook {webhook.Name}", StatusCodes.Status200OK);

    /// <summary>POSTs the event once; the receiver's status, or null when the POST failed (network, timeout).</summary>
    private async Task<HttpStatusCode?> TryPostAsync(WebhookOptions webhook, AlertEvent item, CancellationToken stoppingToken)
    {
        try
        {
            return await PostAsync(webhook, item, stoppingToken);
        }
        catch (Exception) when (!stoppingToken.IsCancellationRequested)
        {
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

    private enum PassOverOutcome
    {
        /// <summary>Not told apart yet (no other patient's event waits, or the receiver refused that too): tried again as before.</summary>
        NotYet,

        /// <summary>The receiver took another patient's event and refused this one again: given up.</summary>
        PassedOver,

        /// <summary>The receiver took this one on the second offer.</summary>
        Delivered,

        /// <summary>This server lost the delivery lease meanwhile: it stops.</summary>
        LeaseLost,
    }

    /// <summary>A webhook's events taken ahead of their turn, and the patients whose events it passed over lately.</summary>
    private sealed class PassOver
    {
        private const int MaxPatients = 1_000;
        private static readonly TimeSpan Remembered = TimeSpan.FromHours(1);
        private readonly Dictionary<string, DateTimeOffset> _patients = new(StringComparer.Ordinal);

        /// <summary>Positions of events taken ahead of their turn: skipped when their turn comes.</summary>
        public HashSet<long> DeliveredAhead { get; } = [];

        /// <summary>Positions of events offered ahead of their turn, recorded in the audit log then: not recorded again.</summary>
        public HashSet<long> RecordedAhead { get; } = [];

        /// <summary>
        /// Whether an event failing since <paramref name="firstFailed"/> is to be told apart now: once it has failed for
        /// <paramref name="after"/>, or, when the receiver refused an event of the same patient within the hour, once it
        /// has failed three times (two waits: a receiver's chance 500s pass in that time), so that each of that patient's
        /// events does not hold the others back again.
        /// </summary>
        public bool Due(string patientId, DateTimeOffset firstFailed, int attempts, DateTimeOffset now, TimeSpan after) =>
            now - firstFailed >= after || (attempts >= 3 && _patients.TryGetValue(patientId, out var at) && now - at < Remembered);

        public void Passed(string patientId, DateTimeOffset now)
        {
            if (_patients.Count >= MaxPatients)
            {
                foreach (var stale in _patients.Where(entry => now - entry.Value >= Remembered).Select(entry => entry.Key).ToList())
                {
                    _patients.Remove(stale);
                }

                if (_patients.Count >= MaxPatients)
                {
                    _patients.Clear();
                }
            }

            _patients[patientId] = now;
        }
    }

    [LoggerMessage(EventId = 3201, Level = LogLevel.Warning, Message = "Webhook {Webhook}: delivering event {EventId} failed (attempt {Attempt}: {Failure}); retrying in {Delay}")]
    private static partial void LogRetrying(ILogger logger, string webhook, string eventId, int attempt, string failure, TimeSpan delay);

    [LoggerMessage(EventId = 3202, Level = LogLevel.Error, Message = "Webhook {Webhook}: gave up on event {EventId} after {Attempts} attempts ({Failure}); it stays in the alert history")]
    private static partial void LogGivenUp(ILogger logger, string webhook, string eventId, int attempts, string failure);

    [LoggerMessage(EventId = 3204, Level = LogLevel.Information, Message = "Webhook {Webhook}: event {EventId} failing, offered another patient's event {Other}: {Answer}")]
    private static partial void LogPassOverProbe(ILogger logger, string webhook, string eventId, string other, string answer);

    [LoggerMessage(EventId = 3203, Level = LogLevel.Warning, Message = "Webhook {Webhook}: reading the alert store, or recording a delivery in the audit log, failed; trying again")]
    private static partial void LogStoreFailed(ILogger logger, Exception exception, string webhook);
}
