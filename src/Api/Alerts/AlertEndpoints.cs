using System.Globalization;
using System.Text.Json;
using Microsoft.AspNetCore.Http.HttpResults;
using Telemetry.Api.Audit;
using Telemetry.Api.Hosting;
using Telemetry.Api.Security;
using Telemetry.Core;
using Telemetry.Core.Alerts;
using Telemetry.Core.Grains;
using Telemetry.Core.Readings;
using Telemetry.Core.Storage;
using Telemetry.Grains.Alerts;
using Telemetry.Storage;
using Telemetry.Storage.Audit;

namespace Telemetry.Api.Alerts;

/// <summary>Alert rules, alert history, acknowledge and snooze, replay, and live alert streams (server-sent events).</summary>
public static class AlertEndpoints
{
    public const int MaxListed = 1_000;

    /// <summary>Open alerts read at most to order a list of them by priority (a patient holds at most 64 open).</summary>
    private const int MaxOpenConsidered = 10_000;
    public const int MaxReplayReadings = 500_000;
    /// <summary>
    /// The longest range a replay reads, as any read of raw readings (<see cref="Trends.TrendReader.MaxRawRange"/>): each
    /// vital's read scans every patient's readings in the range, so a month would cost a month's scan per vital.
    /// </summary>
    public static readonly TimeSpan MaxReplayRange = Trends.TrendReader.MaxRawRange;
    /// <summary>The longest snooze of any alert (a low-priority one's: see <see cref="AlertSnooze.Longest"/>).</summary>
    public static readonly TimeSpan MaxSnooze = AlertSnooze.Longest(AlertPriority.Low);

    public static IEndpointRouteBuilder MapAlertEndpoints(this IEndpointRouteBuilder routes)
    {
        var read = new PatientAccessFilter(PatientRight.Read);
        var act = new PatientAccessFilter(PatientRight.Act);
        var patient = routes.MapGroup("/api/patients/{patientId}").RequireAuthorization(TelemetryAuthentication.PersonPolicy).RequireRateLimiting(TelemetryAuthentication.ApiRateLimit).Audited().WithTags("Alerts");
        patient.MapGet("/alert-rules", GetRulesAsync).AddEndpointFilter(read);
        patient.MapPut("/alert-rules", PutRulesAsync).AddEndpointFilter(act);
        patient.MapPost("/alert-rules/replay", ReplayAsync).AddEndpointFilter(act);
        patient.MapGet("/alerts", GetPatientAlertsAsync).AddEndpointFilter(read);
        patient.MapGet("/alerts/stream", (string patientId, HttpContext context, IAlertStore store, AlertBroadcaster broadcaster, AlertStreamSlots slots) =>
            Identifier.IsValid(patientId)
                ? AlertEventStream.RunAsync(context, patientId, store, broadcaster, slots)
                : InvalidPatient().ExecuteAsync(context)).AddEndpointFilter(read);

        // Across patients: an admin sees every patient's alerts, anyone else those of the patients they may read.
        var alerts = routes.MapGroup("/api/alerts").RequireAuthorization(TelemetryAuthentication.PersonPolicy).RequireRateLimiting(TelemetryAuthentication.ApiRateLimit).Audited().WithTags("Alerts");
        alerts.MapGet("/", GetOpenAlertsAsync);
        alerts.MapGet("/stream", (HttpContext context, IAlertStore store, AlertBroadcaster broadcaster, AlertStreamSlots slots) =>
            AlertEventStream.RunAsync(context, null, store, broadcaster, slots));
        alerts.MapGet("/{alertId}", GetAlertAsync).AddEndpointFilter(read);
        alerts.MapPost("/{alertId}/ack", AcknowledgeAsync).AddEndpointFilter(act);
        alerts.MapPost("/{alertId}/snooze", SnoozeAsync).AddEndpointFilter(act);

        routes.MapGet("/api/alert-templates", () => TypedResults.Ok(AlertRuleTemplates.Names.Order().Select(name =>
            new AlertTemplate(name, AlertRuleTemplates.TryGet(name, out var rules) ? rules.Rules : []))))
            .RequireAuthorization(TelemetryAuthentication.PersonPolicy).RequireRateLimiting(TelemetryAuthentication.ApiRateLimit).WithTags("Alerts");
        return routes;
    }

    private static async Task<IResult> GetRulesAsync(string patientId, IGrainFactory grains)
    {
        if (!Identifier.IsValid(patientId))
        {
            return InvalidPatient();
        }

        return TypedResults.Ok(await grains.GetGrain<IPatientGrain>(patientId).GetAlertRulesAsync());
    }

    private static async Task<IResult> PutRulesAsync(string patientId, HttpRequest request, IGrainFactory grains, IPatientDirectory directory)
    {
        // Rules make a patient known (listed on the dashboards): a new one's id is a FHIR id, as a device's patient's.
        if (!await Patients.PatientIds.MayNameAsync(patientId, directory, request.HttpContext.RequestAborted))
        {
            return TypedResults.ValidationProblem(new Dictionary<string, string[]> { ["patientId"] = [Identifier.PatientShape] });
        }

        var (rules, problem) = await ReadRulesAsync(request);
        if (problem is not null)
        {
            return problem;
        }

        return TypedResults.Ok(await grains.GetGrain<IPatientGrain>(patientId).SetAlertRulesAsync(rules!));
    }

    private static async Task<IResult> ReplayAsync(string patientId, HttpRequest request, IRawSeriesStore rawStore, TimeProvider timeProvider, CancellationToken cancellationToken)
    {
        if (!Identifier.IsValid(patientId))
        {
            return InvalidPatient();
        }

        var (rules, problem, body) = await ReadRulesWithBodyAsync(request);
        if (problem is not null)
        {
            return problem;
        }

        // Nothing is stored from before 1970.
        if (body!.To < DateTimeOffset.UnixEpoch || body.From < DateTimeOffset.UnixEpoch)
        {
            return Invalid(body.To < DateTimeOffset.UnixEpoch ? "to" : "from", "a time from 1970-01-01T00:00:00Z on");
        }

        var to = body.To ?? timeProvider.GetUtcNow();
        var from = body.From ?? to.AddDays(-1);
        if (from >= to)
        {
            return Invalid("from", "must be before 'to'");
        }

        if (to - from > MaxReplayRange)
        {
            return Invalid("from", $"a replay spans at most {MaxReplayRange.TotalDays} days");
        }

        var fromMs = from.ToUnixTimeMilliseconds();
        var toMs = to.ToUnixTimeMilliseconds();
        var readings = new List<VitalReading>();
        var truncated = false;
        foreach (var kind in AlertReplay.KindsNeeded(rules!))
        {
            var remaining = MaxReplayReadings - readings.Count;
            var some = await rawStore.ReadAsync(patientId, kind, fromMs, toMs, remaining + 1, cancellationToken);
            truncated |= some.Count > remaining;
            readings.AddRange(some.Take(remaining).Select(reading => new VitalReading(reading.Kind, reading.TimestampMs, reading.Value)));
        }

        var alerts = AlertReplay.Run(patientId, rules!, readings, fromMs, toMs);
        return TypedResults.Ok(new ReplayResult(patientId, from, to, readings.Count, truncated, alerts));
    }

    private static async Task<IResult> GetPatientAlertsAsync(
        string patientId, DateTimeOffset? from, DateTimeOffset? to, string? status, int? limit, string? after, IAlertStore store, CancellationToken cancellationToken)
    {
        if (!Identifier.IsValid(patientId))
        {
            return InvalidPatient();
        }

        return await ListAsync(patientId, from, to, status ?? "all", limit, after, store, cancellationToken);
    }

    private static async Task<IResult> GetOpenAlertsAsync(
        DateTimeOffset? from, DateTimeOffset? to, string? status, int? limit, string? after, HttpContext context, PatientAccess access, IAlertStore store, AuditLog audit,
        CancellationToken cancellationToken)
    {
        var result = await ListAsync(null, from, to, status ?? "open", limit, after, store, cancellationToken, await access.ReadablePatientsAsync(context.User, cancellationToken));

        // A list across patients reads each listed patient's alerts: each one is recorded, beside the request's record.
        if (result is Ok<IReadOnlyList<Alert>> { Value: { } alerts })
        {
            await AuditFilter.RecordEachAsync(audit, context, alerts.Select(alert => alert.PatientId).Distinct(StringComparer.Ordinal));
        }

        return result;
    }

    private static async Task<IResult> ListAsync(
        string? patientId, DateTimeOffset? from, DateTimeOffset? to, string status, int? limit, string? after, IAlertStore store, CancellationToken cancellationToken,
        IReadOnlySet<string>? visible = null)
    {
        if (status is not ("open" or "all"))
        {
            return Invalid("status", "open or all");
        }

        if (limit is < 1 or > MaxListed)
        {
            return Invalid("limit", $"1 to {MaxListed}");
        }

        if (from is not null && to is not null && from >= to)
        {
            return Invalid("from", "must be before 'to'");
        }

        // The next page starts after the last alert of the one before. An alert the caller could not list (another
        // patient's, or one that is not there) is refused the same way, so the answer tells nothing about it.
        Alert? cursor = null;
        if (after is not null)
        {
            cursor = AlertIds.TryParse(after, out var afterPatient, out _)
                && (patientId is null ? visible is null || visible.Contains(afterPatient) : afterPatient == patientId)
                    ? await store.GetAsync(after, cancellationToken)
                    : null;
            if (cursor is null)
            {
                return Invalid("after", "the id of an alert this list holds (the last of the page before)");
            }
        }

        // Open alerts come most urgent first, then newest: the order a clinician works through them. The store keeps
        // them by time, so the open ones are read (up to MaxOpenConsidered, the newest) and the limit taken after the
        // ordering: an older high-priority alert is not pushed off the list by newer low ones. A page after an alert
        // starts after it in that order; the store starts one of all alerts there itself.
        var open = status == "open";
        var take = limit ?? 100;
        var read = open ? MaxOpenConsidered : take;
        var storeAfter = open || cursor is null ? ((DateTimeOffset, string)?)null : (cursor.RaisedAt, cursor.AlertId);
        IEnumerable<Alert> Listed(IEnumerable<Alert> alerts) => open
            ? alerts.OrderByDescending(a => a.Priority).ThenByDescending(a => a.RaisedAt).ThenByDescending(a => a.AlertId, StringComparer.Ordinal)
                .Where(a => cursor is null || ComesAfter(a, cursor)).Take(take)
            : alerts.Take(take);

        IReadOnlyList<Alert> listed;
        if (visible is null)
        {
            listed = [.. Listed(await store.QueryAsync(new AlertQuery(patientId, from, to, open, read, storeAfter), cancellationToken))];
        }
        else
        {
            // Someone who may read only some patients gets theirs, each read on its own (a care team is tens of patients),
            // and only the first `limit` of those read so far are held: a caller of thousands of patients does not hold
            // thousands of lists.
            List<Alert> found = [];
            foreach (var visiblePatient in visible.Order(StringComparer.Ordinal))
            {
                var theirs = await store.QueryAsync(new AlertQuery(visiblePatient, from, to, open, read, storeAfter), cancellationToken);
                found = [.. Listed(found.Concat(theirs).OrderByDescending(a => a.RaisedAt).ThenByDescending(a => a.AlertId, StringComparer.Ordinal))];
            }

            listed = found;
        }

        // Typed as the caller that audits a list across patients reads it.
        return TypedResults.Ok(listed);
    }

    /// <summary>Whether <paramref name="alert"/> comes after <paramref name="cursor"/> in the open alerts' order: less urgent, or as urgent and older (by id within a millisecond).</summary>
    private static bool ComesAfter(Alert alert, Alert cursor) =>
        alert.Priority != cursor.Priority ? alert.Priority < cursor.Priority
        : alert.RaisedAt != cursor.RaisedAt ? alert.RaisedAt < cursor.RaisedAt
        : string.CompareOrdinal(alert.AlertId, cursor.AlertId) < 0;

    private static async Task<IResult> GetAlertAsync(string alertId, IAlertStore store, CancellationToken cancellationToken)
    {
        if (!AlertIds.TryParse(alertId, out _, out _))
        {
            return InvalidAlertId();
        }

        return await store.GetAsync(alertId, cancellationToken) is { } alert ? TypedResults.Ok(alert) : AlertNotFound(alertId);
    }

    private static async Task<IResult> AcknowledgeAsync(string alertId, HttpRequest request, IGrainFactory grains, IAlertStore store)
    {
        if (!AlertIds.TryParse(alertId, out var patientId, out _))
        {
            return InvalidAlertId();
        }

        var (action, problem) = await ReadActionAsync(request);
        if (problem is not null)
        {
            return problem;
        }

        var alert = await grains.GetGrain<IPatientGrain>(patientId).AcknowledgeAsync(alertId, Actor(request, action));
        return alert is not null ? TypedResults.Ok(alert) : await NotOpenAsync(alertId, store);
    }

    private static async Task<IResult> SnoozeAsync(string alertId, HttpRequest request, IGrainFactory grains, IAlertStore store)
    {
        if (!AlertIds.TryParse(alertId, out var patientId, out _))
        {
            return InvalidAlertId();
        }

        var (action, problem) = await ReadActionAsync(request);
        if (problem is not null)
        {
            return problem;
        }

        if (action.Minutes is not { } minutes || !double.IsFinite(minutes) || minutes <= 0 || minutes > MaxSnooze.TotalMinutes)
        {
            return Invalid("minutes", $"required: how long to snooze, more than 0 and at most {MaxSnooze.TotalMinutes} minutes");
        }

        // The alert's priority bounds its snooze: the grain, which holds the alert, refuses a longer one.
        var snoozed = await grains.GetGrain<IPatientGrain>(patientId).SnoozeAsync(alertId, TimeSpan.FromMinutes(minutes), Actor(request, action));
        if (snoozed.TooLongFor is { } priority)
        {
            return Invalid("minutes", string.Create(CultureInfo.InvariantCulture,
                $"a {priority.ToString().ToLowerInvariant()}-priority alert snoozes for at most {AlertSnooze.Longest(priority).TotalMinutes} minutes; to keep its condition quiet for longer, change the patient's alert rules"));
        }

        return snoozed.Alert is { } alert ? TypedResults.Ok(alert) : await NotOpenAsync(alertId, store);
    }

    /// <summary>
    /// Who acknowledged or snoozed: a person is who their token says, whatever the body claims; a tool using the admin
    /// token may name the person it acts for in <c>by</c>.
    /// </summary>
    private static string Actor(HttpRequest request, AlertActionRequest action) =>
        request.HttpContext.User.Identity is { AuthenticationType: AdminTokenAuthenticationHandler.SchemeName }
            ? action.By ?? AdminToken.Principal
            : TelemetryClaims.Actor(request.HttpContext) ?? AdminToken.Principal;

    private static async Task<IResult> NotOpenAsync(string alertId, IAlertStore store) =>
        await store.GetAsync(alertId) is { } closed
            ? TypedResults.Problem(statusCode: StatusCodes.Status409Conflict, title: "Alert is not open",
                detail: $"Alert {alertId} was {closed.Status.ToString().ToLowerInvariant()} at {closed.ClearedAt:O}; only an open alert can be acknowledged or snoozed.")
            : AlertNotFound(alertId);

    private static async Task<(AlertRuleSet? Rules, IResult? Problem)> ReadRulesAsync(HttpRequest request)
    {
        var (rules, problem, _) = await ReadRulesWithBodyAsync(request);
        return (rules, problem);
    }

    private static async Task<(AlertRuleSet? Rules, IResult? Problem, AlertRulesRequest? Body)> ReadRulesWithBodyAsync(HttpRequest request)
    {
        AlertRulesRequest? body;
        try
        {
            body = await JsonSerializer.DeserializeAsync<AlertRulesRequest>(request.Body, TelemetryJson.Options, request.HttpContext.RequestAborted);
        }
        catch (JsonException exception)
        {
            return (null, Invalid(exception.Path ?? "body", exception.Message), null);
        }

        if (body is null || (body.Rules is null && body.Template is null))
        {
            return (null, Invalid("rules", "send 'rules', or a 'template' name: " + string.Join(", ", AlertRuleTemplates.Names)), body);
        }

        AlertRuleSet? template = null;
        if (body.Template is not null && !AlertRuleTemplates.TryGet(body.Template, out template))
        {
            return (null, Invalid("template", "one of: " + string.Join(", ", AlertRuleTemplates.Names)), body);
        }

        var rules = new AlertRuleSet(body.Rules ?? template!.Rules, body.Template);
        var errors = AlertRuleValidation.Validate(rules);
        return errors.Count > 0
            ? (null, TypedResults.ValidationProblem(errors, title: "The alert rules are not valid"), body)
            : (rules, null, body);
    }

    private static async Task<(AlertActionRequest Action, IResult? Problem)> ReadActionAsync(HttpRequest request)
    {
        if (request.ContentLength is 0 || (request.ContentLength is null && !request.HasJsonContentType()))
        {
            return (new AlertActionRequest(), null);
        }

        try
        {
            var action = await JsonSerializer.DeserializeAsync<AlertActionRequest>(request.Body, TelemetryJson.Options, request.HttpContext.RequestAborted);
            if (action?.By is { } by && (by.Length > 128 || by.Any(char.IsControl)))
            {
                return (new AlertActionRequest(), Invalid("by", "at most 128 characters, no control characters"));
            }

            return (action ?? new AlertActionRequest(), null);
        }
        catch (JsonException exception)
        {
            return (new AlertActionRequest(), Invalid(exception.Path ?? "body", exception.Message));
        }
    }

    private static IResult InvalidPatient() => Invalid("patientId", Identifier.Shape);

    private static IResult InvalidAlertId() => Invalid("alertId", "an alert id: the patient id, '~' and the alert's number");

    private static IResult AlertNotFound(string alertId) =>
        TypedResults.Problem(statusCode: StatusCodes.Status404NotFound, title: "No such alert", detail: $"There is no alert {alertId}.");

    private static IResult Invalid(string field, string message) =>
        TypedResults.ValidationProblem(new Dictionary<string, string[]> { [field] = [message] });
}
