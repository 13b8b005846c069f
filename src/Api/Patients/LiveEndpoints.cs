using System.Globalization;
using System.Security.Claims;
using System.Text.Json;
using Telemetry.Api.Audit;
using Telemetry.Api.Hosting;
using Telemetry.Api.Security;
using Telemetry.Core;
using Telemetry.Core.Storage;
using Telemetry.Storage.Audit;

namespace Telemetry.Api.Patients;

/// <summary>
/// The patients a person may read, with their latest vitals: as a list, and as a stream of server-sent events that
/// says when a patient's vitals change. What the clinician's dashboard shows; every patient listed or streamed is
/// recorded in the audit log, and a stream keeps checking that its reader may still see each patient.
/// </summary>
public static partial class LiveEndpoints
{
    /// <summary>The most patients one list page or one stream covers.</summary>
    public const int MaxPatients = 500;

    private static readonly TimeSpan PollInterval = TimeSpan.FromSeconds(1);

    public static IEndpointRouteBuilder MapLiveEndpoints(this IEndpointRouteBuilder routes)
    {
        routes.MapGet("/api/patients", ListAsync)
            .RequireAuthorization(TelemetryAuthentication.PersonPolicy).RequireRateLimiting(TelemetryAuthentication.ApiRateLimit)
            .Audited()
            .WithTags("Patients").WithSummary("The patients the caller may read, in id order, with their latest vitals");
        routes.MapGet("/api/live/stream", StreamAllAsync)
            .RequireAuthorization(TelemetryAuthentication.PersonPolicy).RequireRateLimiting(TelemetryAuthentication.ApiRateLimit)
            .Audited()
            .WithTags("Patients").WithSummary("Server-sent events: a patient's latest vitals whenever they change, for every patient the caller may read");
        return routes;
    }

    /// <summary>The live stream of one patient, mapped in the patient group (whose filters check access and audit).</summary>
    public static Task StreamOneAsync(string patientId, HttpContext context, PatientAccess access, IGrainFactory grains, LiveStreamSlots slots, TimeProvider timeProvider, ILoggerFactory loggers) =>
        Identifier.IsValid(patientId)
            ? StreamAsync(context, async cancellationToken =>
                await access.AllowsAsync(context.User, patientId, PatientRight.Read, cancellationToken) ? [patientId] : [],
                grains, slots, timeProvider, loggers, onePatient: true)
            : TypedResults.ValidationProblem(new Dictionary<string, string[]> { ["patientId"] = [Identifier.Shape] }).ExecuteAsync(context);

    private static async Task<IResult> ListAsync(
        int? limit, string? after, HttpContext context, PatientAccess access, IPatientDirectory directory, IGrainFactory grains, AuditLog audit, CancellationToken cancellationToken)
    {
        if (limit is < 1 or > MaxPatients)
        {
            return TypedResults.ValidationProblem(new Dictionary<string, string[]> { ["limit"] = [$"1 to {MaxPatients}"] });
        }

        var pageSize = limit ?? 100;
        var patients = await VisibleAsync(context.User, access, directory, pageSize, after, cancellationToken);
        var views = await Task.WhenAll(patients.Select(patientId => LiveView.ReadAsync(grains, patientId)));
        await AuditFilter.RecordEachAsync(audit, context, patients);
        return TypedResults.Ok(new PatientList(views, patients.Count == pageSize ? patients[^1] : null));
    }

    private static Task StreamAllAsync(
        HttpContext context, PatientAccess access, IPatientDirectory directory, IGrainFactory grains, LiveStreamSlots slots, TimeProvider timeProvider, ILoggerFactory loggers) =>
        StreamAsync(context, cancellationToken => VisibleAsync(context.User, access, directory, MaxPatients, null, cancellationToken), grains, slots, timeProvider, loggers, onePatient: false);

    /// <summary>The patients <paramref name="user"/> may read, in id order: every known patient for an admin.</summary>
    private static async Task<IReadOnlyList<string>> VisibleAsync(
        ClaimsPrincipal user, PatientAccess access, IPatientDirectory directory, int limit, string? after, CancellationToken cancellationToken)
    {
        var readable = await access.ReadablePatientsAsync(user, cancellationToken);
        if (readable is null)
        {
            return await directory.ListAsync(limit, after, cancellationToken);
        }

        return [.. readable.Where(patientId => after is null || string.CompareOrdinal(patientId, after) > 0).Order(StringComparer.Ordinal).Take(limit)];
    }

    /// <summary>
    /// Reads the patients' live pictures from their grains every second and sends each patient whose vitals changed
    /// (every patient once at the start) as an event <c>vitals</c>. Reading the grains, not the ingest path, keeps the
    /// stream off the hot path and right in a cluster. Every 30 seconds (by default) the stream asks again which patients
    /// its reader may see (a care team changed, a patient added; each new one audited): one no longer readable is sent as
    /// an event <c>removed</c> (so a dashboard drops its row, not shows it frozen), and a one-patient stream whose
    /// patient is no longer readable sends <c>revoked</c> and ends. It ends with <c>expired</c> when the reader's token
    /// expires.
    /// </summary>
    private static Task StreamAsync(
        HttpContext context, Func<CancellationToken, Task<IReadOnlyList<string>>> readable, IGrainFactory grains, LiveStreamSlots slots, TimeProvider timeProvider, ILoggerFactory loggers, bool onePatient) =>
        slots.RunAsync(context, () => RunAsync(context, readable, grains, timeProvider, loggers.CreateLogger(typeof(LiveEndpoints)), onePatient));

    private static async Task RunAsync(
        HttpContext context, Func<CancellationToken, Task<IReadOnlyList<string>>> readable, IGrainFactory grains, TimeProvider timeProvider, ILogger logger, bool onePatient)
    {
        using var running = EventStream.RunUntilStopping(context);
        var cancellationToken = running.Token;
        var audit = context.RequestServices.GetRequiredService<AuditLog>();
        var expires = EventStream.ExpiryOf(context.User);
        var accessCheckInterval = EventStream.AccessCheckInterval(context);
        var patients = await readable(cancellationToken);
        await AuditFilter.RecordEachAsync(audit, context, patients);
        var response = context.Response;
        await EventStream.BeginAsync(response, "telemetry live vitals", cancellationToken);

        var sent = new Dictionary<string, string>(StringComparer.Ordinal);
        var quietSince = timeProvider.GetTimestamp();
        var checkedAt = timeProvider.GetTimestamp();
        using var timer = new PeriodicTimer(PollInterval, timeProvider);
        try
        {
            do
            {
                if (expires is { } end && timeProvider.GetUtcNow() >= end)
                {
                    await EventStream.EndAsync(response, "expired", cancellationToken);
                    return;
                }

                var wrote = false;
                if (timeProvider.GetElapsedTime(checkedAt) >= accessCheckInterval)
                {
                    var now = await readable(cancellationToken);
                    if (onePatient && now.Count == 0)
                    {
                        await EventStream.EndAsync(response, "revoked", cancellationToken);
                        return;
                    }

                    await AuditFilter.RecordEachAsync(audit, context, now.Except(patients, StringComparer.Ordinal));
                    foreach (var gone in patients.Except(now, StringComparer.Ordinal))
                    {
                        sent.Remove(gone);
                        await response.WriteAsync($"event: removed\ndata: {{\"patientId\":\"{JsonEncodedText.Encode(gone)}\"}}\n\n", cancellationToken);
                        wrote = true;
                    }

                    (patients, checkedAt) = (now, timeProvider.GetTimestamp());
                }

                foreach (var view in await Task.WhenAll(patients.Select(patientId => TryReadAsync(grains, patientId, logger))))
                {
                    if (view is null)
                    {
                        continue;
                    }

                    var signature = string.Join('|', view.Vitals.Select(vital => string.Create(CultureInfo.InvariantCulture, $"{vital.Kind}:{vital.Time.ToUnixTimeMilliseconds()}:{vital.Value}")));
                    if (sent.TryGetValue(view.PatientId, out var previous) && previous == signature)
                    {
                        continue;
                    }

                    sent[view.PatientId] = signature;
                    await response.WriteAsync($"event: vitals\ndata: {JsonSerializer.Serialize(view, TelemetryJson.Options)}\n\n", cancellationToken);
                    wrote = true;
                }

                if (!wrote && timeProvider.GetElapsedTime(quietSince) >= EventStream.KeepAliveInterval)
                {
                    await response.WriteAsync(": keep-alive\n\n", cancellationToken);
                    wrote = true;
                }

                if (wrote)
                {
                    quietSince = timeProvider.GetTimestamp();
                    await response.Body.FlushAsync(cancellationToken);
                }
            }
            while (await timer.WaitForNextTickAsync(cancellationToken));
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // The client went away, or the server is stopping.
        }
    }

    /// <summary>One patient's live view, or null when their grain could not answer this time (the stream goes on).</summary>
    private static async Task<LiveView?> TryReadAsync(IGrainFactory grains, string patientId, ILogger logger)
    {
        try
        {
            return await LiveView.ReadAsync(grains, patientId);
        }
        catch (Exception exception) when (exception is not OperationCanceledException)
        {
            LogReadFailed(logger, exception, patientId);
            return null;
        }
    }

    [LoggerMessage(EventId = 3301, Level = LogLevel.Warning, Message = "A live stream could not read patient {PatientId}'s vitals this time")]
    private static partial void LogReadFailed(ILogger logger, Exception exception, string patientId);
}
