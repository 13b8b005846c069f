using System.Security.Claims;
using System.Text.Json;
using Telemetry.Api.Hosting;
using Telemetry.Api.Security;
using Telemetry.Core;
using Telemetry.Core.Storage;
using Telemetry.Storage.Audit;

namespace Telemetry.Api.Patients;

/// <summary>
/// The patients a person may read, with their latest vitals: as a list, and as a stream of server-sent events that
/// says when a patient's vitals change. What the clinician's dashboard shows; every patient listed or streamed is
/// recorded in the audit log.
/// </summary>
public static class LiveEndpoints
{
    /// <summary>The most patients one list page or one stream covers.</summary>
    public const int MaxPatients = 500;

    private static readonly TimeSpan PollInterval = TimeSpan.FromSeconds(1);

    public static IEndpointRouteBuilder MapLiveEndpoints(this IEndpointRouteBuilder routes)
    {
        routes.MapGet("/api/patients", ListAsync)
            .RequireAuthorization(TelemetryAuthentication.PersonPolicy).RequireRateLimiting(TelemetryAuthentication.ApiRateLimit)
            .WithTags("Patients").WithSummary("The patients the caller may read, in id order, with their latest vitals");
        routes.MapGet("/api/live/stream", StreamAllAsync)
            .RequireAuthorization(TelemetryAuthentication.PersonPolicy).RequireRateLimiting(TelemetryAuthentication.ApiRateLimit)
            .WithTags("Patients").WithSummary("Server-sent events: a patient's latest vitals whenever they change, for every patient the caller may read");
        return routes;
    }

    /// <summary>The live stream of one patient, mapped in the patient group (whose filters check access and audit).</summary>
    public static Task StreamOneAsync(string patientId, HttpContext context, IGrainFactory grains, TimeProvider timeProvider) =>
        Identifier.IsValid(patientId)
            ? StreamAsync(context, [patientId], grains, timeProvider)
            : TypedResults.ValidationProblem(new Dictionary<string, string[]> { ["patientId"] = ["1 to 128 characters of letters, digits and - _ : ."] }).ExecuteAsync(context);

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
        foreach (var patientId in patients)
        {
            await Audit.AuditFilter.RecordAsync(audit, context, patientId, StatusCodes.Status200OK);
        }

        return TypedResults.Ok(new PatientList(views, patients.Count == pageSize ? patients[^1] : null));
    }

    private static async Task StreamAllAsync(HttpContext context, PatientAccess access, IPatientDirectory directory, IGrainFactory grains, AuditLog audit, TimeProvider timeProvider)
    {
        var patients = await VisibleAsync(context.User, access, directory, MaxPatients, null, context.RequestAborted);
        foreach (var patientId in patients)
        {
            await Audit.AuditFilter.RecordAsync(audit, context, patientId, StatusCodes.Status200OK);
        }

        await StreamAsync(context, patients, grains, timeProvider);
    }

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
    /// stream off the hot path and right in a cluster.
    /// </summary>
    private static async Task StreamAsync(HttpContext context, IReadOnlyList<string> patients, IGrainFactory grains, TimeProvider timeProvider)
    {
        var cancellationToken = context.RequestAborted;
        var response = context.Response;
        await EventStream.BeginAsync(response, "telemetry live vitals", cancellationToken);

        var sent = new Dictionary<string, string>(StringComparer.Ordinal);
        var quietSince = timeProvider.GetTimestamp();
        using var timer = new PeriodicTimer(PollInterval, timeProvider);
        try
        {
            do
            {
                var views = await Task.WhenAll(patients.Select(patientId => LiveView.ReadAsync(grains, patientId)));
                var wrote = false;
                foreach (var view in views)
                {
                    var signature = string.Join('|', view.Vitals.Select(vital => $"{vital.Kind}:{vital.Time.ToUnixTimeMilliseconds()}:{vital.Value}"));
                    if (sent.TryGetValue(view.PatientId, out var previous) && previous == signature)
                    {
                        continue;
                    }

                    sent[view.PatientId] = signature;
                    await response.WriteAsync($"event: vitals\ndata: {JsonSerializer.Serialize(view, TelemetryJson.Options)}\n\n", cancellationToken);
                    wrote = true;
                }

                if (wrote)
                {
                    quietSince = timeProvider.GetTimestamp();
                }
                else if (timeProvider.GetElapsedTime(quietSince) >= EventStream.KeepAliveInterval)
                {
                    await response.WriteAsync(": keep-alive\n\n", cancellationToken);
                    quietSince = timeProvider.GetTimestamp();
                    wrote = true;
                }

                if (wrote)
                {
                    await response.Body.FlushAsync(cancellationToken);
                }
            }
            while (await timer.WaitForNextTickAsync(cancellationToken));
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // The client went away.
        }
    }
}
