using Telemetry.Api.Security;
using Telemetry.Core;
using Telemetry.Core.Grains;
using Telemetry.Core.Rollups;
using Telemetry.Core.Storage;
using Telemetry.Core.Vitals;

namespace Telemetry.Api.Patients;

/// <summary>A patient's trends (rollups plus the window still open) and live picture.</summary>
public static class PatientEndpoints
{
    /// <summary>The most windows one trend request may span, so a query stays bounded.</summary>
    public const int MaxPoints = 10_080;

    public static IEndpointRouteBuilder MapPatientEndpoints(this IEndpointRouteBuilder routes)
    {
        var patients = routes.MapGroup("/api/patients/{patientId}").AddEndpointFilter<AdminAuthorizationFilter>().WithTags("Patients");
        patients.MapGet("/trends", GetTrendAsync);
        patients.MapGet("/live", GetLiveAsync);
        return routes;
    }

    private static async Task<IResult> GetTrendAsync(
        string patientId,
        string? kind,
        DateTimeOffset? from,
        DateTimeOffset? to,
        string? resolution,
        IRollupStore rollups,
        IGrainFactory grains,
        TimeProvider timeProvider,
        CancellationToken cancellationToken)
    {
        if (!Identifier.IsValid(patientId))
        {
            return Invalid("patientId", "1 to 128 characters of letters, digits and - _ : .");
        }

        if (kind is null || !VitalCatalogue.TryFind(kind, out var vital))
        {
            return Invalid("kind", $"one of: {string.Join(", ", VitalCatalogue.All.Select(v => v.Name))} (or a LOINC code)");
        }

        var window = Resolution.Minute;
        if (resolution is not null && !ResolutionExtensions.TryParseWireName(resolution, out window))
        {
            return Invalid("resolution", "1m, 1h or 1d");
        }

        var toMs = (to ?? timeProvider.GetUtcNow()).ToUnixTimeMilliseconds();
        var fromMs = from?.ToUnixTimeMilliseconds() ?? toMs - (MaxPoints / 7 * window.Milliseconds());
        if (fromMs >= toMs)
        {
            return Invalid("from", "must be before 'to'");
        }

        var startMs = window.WindowStart(fromMs);
        if ((toMs - startMs) / window.Milliseconds() > MaxPoints)
        {
            return Invalid("from", $"a {window.ToWireName()} trend spans at most {MaxPoints} windows; narrow the range or choose a coarser resolution");
        }

        // The grain first, then the store: a window that closes in between is then in the store's answer.
        var open = await grains.GetGrain<IPatientGrain>(patientId).GetOpenWindowAsync(vital.Kind, window);
        var stored = await rollups.QueryAsync(patientId, vital.Kind, window, startMs, toMs, cancellationToken);

        // Where both have a window of the same start, the one that has seen more readings is the fresher.
        var windows = stored.ToDictionary(w => w.StartMs);
        if (open is { } current && current.StartMs >= startMs && current.StartMs < toMs
            && (!windows.TryGetValue(current.StartMs, out var checkpoint) || current.Count >= checkpoint.Count))
        {
            windows[current.StartMs] = current;
        }

        var points = windows.Values.OrderBy(w => w.StartMs).Select(ToPoint).ToList();
        return TypedResults.Ok(new Trend(patientId, vital.Name, vital.Unit, window.ToWireName(), points));
    }

    private static async Task<IResult> GetLiveAsync(string patientId, IGrainFactory grains)
    {
        if (!Identifier.IsValid(patientId))
        {
            return Invalid("patientId", "1 to 128 characters of letters, digits and - _ : .");
        }

        var snapshot = await grains.GetGrain<IPatientGrain>(patientId).GetLiveAsync();
        var vitals = snapshot.Vitals.Select(v =>
        {
            var definition = VitalCatalogue.Get(v.Kind);
            return new LiveVitalView(definition.Name, definition.Loinc, definition.Unit, v.Value,
                DateTimeOffset.FromUnixTimeMilliseconds(v.TimestampMs), ToPoint(v.CurrentMinute));
        }).ToList();
        return TypedResults.Ok(new LiveView(patientId, vitals));
    }

    private static TrendPoint ToPoint(RollupWindow window) =>
        new(DateTimeOffset.FromUnixTimeMilliseconds(window.StartMs), window.Count, window.Min, window.Max, window.Mean);

    private static IResult Invalid(string parameter, string message) =>
        TypedResults.ValidationProblem(new Dictionary<string, string[]> { [parameter] = [message] });
}
