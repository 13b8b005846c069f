using System.Globalization;
using System.Text;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.Extensions.Options;
using Telemetry.Api.Audit;
using Telemetry.Api.Security;
using Telemetry.Api.Trends;
using Telemetry.Core;
using Telemetry.Core.Grains;
using Telemetry.Core.Rollups;
using Telemetry.Core.Storage;
using Telemetry.Core.Vitals;
using Telemetry.Storage.Retention;

namespace Telemetry.Api.Patients;

/// <summary>A patient's trends (rollups plus the window still open), raw readings, exports, daily progress and live picture.</summary>
public static class PatientEndpoints
{
    /// <summary>The longest range one CSV export may cover.</summary>
    public static readonly TimeSpan MaxExportRange = TimeSpan.FromDays(366);

    /// <summary>The most days one daily summary may cover.</summary>
    public const int MaxDays = 366;

    /// <summary>The steps goal when the request names none.</summary>
    public const int DefaultStepsGoal = 8_000;

    private static readonly string KindChoices = string.Join(", ", VitalCatalogue.All.Select(v => v.Name).Append(VitalCatalogue.BloodPressure.Name));

    public static IEndpointRouteBuilder MapPatientEndpoints(this IEndpointRouteBuilder routes)
    {
        var patients = routes.MapGroup("/api/patients/{patientId}")
            .RequireAuthorization(TelemetryAuthentication.PersonPolicy).RequireRateLimiting(TelemetryAuthentication.ApiRateLimit)
            .Audited()
            .AddEndpointFilter(new PatientAccessFilter(PatientRight.Read))
            .WithTags("Patients");
        patients.MapGet("/trends", GetTrendsAsync)
            .WithSummary("Trends of one or more vitals")
            .WithDescription("kind: one or more catalogue names or LOINC codes (comma-separated or repeated; blood_pressure gives systolic and diastolic). "
                + "resolution: auto (default), raw, 1m, 1h or 1d. One kind answers a Trend; several answer a TrendSet.");
        patients.MapGet("/export.csv", ExportAsync)
            .WithSummary("A range of readings (or windows) as CSV")
            .Produces(StatusCodes.Status200OK, contentType: "text/csv");
        patients.MapGet("/daily", GetDailyAsync).WithSummary("Steps, resting heart rate, sleep and weight per day");
        patients.MapGet("/live", GetLiveAsync).WithSummary("The latest value of every vital");
        patients.MapGet("/live/stream", LiveEndpoints.StreamOneAsync).WithSummary("Server-sent events: the patient's latest vitals whenever they change");
        return routes;
    }

    private static async Task<Results<Ok<Trend>, Ok<TrendSet>, ValidationProblem>> GetTrendsAsync(
        string patientId,
        string[]? kind,
        DateTimeOffset? from,
        DateTimeOffset? to,
        string? resolution,
        TrendReader reader,
        TimeProvider timeProvider,
        IOptions<RetentionOptions> retention,
        CancellationToken cancellationToken)
    {
        if (!Identifier.IsValid(patientId))
        {
            return InvalidPatient();
        }

        if (!TryParseKinds(kind, out var vitals) || vitals.Count == 0)
        {
            return Invalid("kind", $"one or more of: {KindChoices} (or LOINC codes)");
        }

        if (!TrendScale.TryParse(resolution, out var scale))
        {
            return Invalid("resolution", "auto, raw, 1m, 1h or 1d");
        }

        if (!TryReadRange(from, to, timeProvider, out var fromMs, out var toMs))
        {
            return Invalid("from", RangeRule);
        }

        var auto = TrendScale.Auto(fromMs, toMs, retention.Value, timeProvider.GetUtcNow().ToUnixTimeMilliseconds());
        if ((scale ?? auto) is { Window: { } window } chosen && chosen.WindowsSpanned(fromMs, toMs) > TrendReader.MaxWindows)
        {
            return Invalid("from", $"a {window.ToWireName()} trend spans at most {TrendReader.MaxWindows} windows; narrow the range or choose a coarser resolution");
        }

        if (scale is { IsRaw: true } && toMs - fromMs > (long)TrendReader.MaxRawRange.TotalMilliseconds)
        {
            return Invalid("from", $"raw readings are read at most {TrendReader.MaxRawRange.TotalDays} days at a time; narrow the range or choose 1m");
        }

        var series = new List<Trend>(vitals.Count);
        foreach (var vital in vitals)
        {
            var trend = await ReadTrendAsync(reader, patientId, vital, scale, auto, fromMs, toMs, cancellationToken);
            if (trend is null)
            {
                return Invalid("resolution", $"more than {TrendReader.MaxRawReadings} raw readings of {vital.Name} in the range; narrow it or choose 1m");
            }

            series.Add(trend);
        }

        return series.Count == 1
            ? TypedResults.Ok(series[0])
            : TypedResults.Ok(new TrendSet(patientId, DateTimeOffset.FromUnixTimeMilliseconds(fromMs), DateTimeOffset.FromUnixTimeMilliseconds(toMs), series));
    }

    /// <summary>One vital's trend; null when raw readings were asked for and there are too many.</summary>
    private static async Task<Trend?> ReadTrendAsync(
        TrendReader reader, string patientId, VitalDefinition vital, TrendScale? asked, TrendScale auto, long fromMs, long toMs, CancellationToken cancellationToken)
    {
        var scale = asked ?? auto;
        if (scale.IsRaw)
        {
            var raw = await reader.ReadRawAsync(patientId, vital.Kind, fromMs, toMs, TrendReader.MaxRawReadings + 1, cancellationToken);
            if (raw.Count <= TrendReader.MaxRawReadings)
            {
                var points = raw.Select(r => ToPoint(TrendReader.Single(r.TimestampMs, r.Value))).ToList();
                return new Trend(patientId, vital.Name, vital.Unit, scale.WireName, points);
            }

            if (asked is not null)
            {
                return null;
            }

            // Auto chose raw readings for a short range, but they are too dense to list: minutes say it better.
            scale = new TrendScale(Resolution.Minute);
        }

        var windows = await reader.ReadWindowsAsync(patientId, vital.Kind, scale.Window!.Value, fromMs, toMs, cancellationToken);
        return new Trend(patientId, vital.Name, vital.Unit, scale.WireName, [.. windows.Select(ToPoint)]);
    }

    private static async Task<IResult> ExportAsync(
        HttpContext context,
        string patientId,
        string[]? kind,
        DateTimeOffset? from,
        DateTimeOffset? to,
        string? resolution,
        TrendReader reader,
        IRawSeriesStore rawStore,
        TimeProvider timeProvider)
    {
        if (!Identifier.IsValid(patientId))
        {
            return InvalidPatient();
        }

        if (!TryParseKinds(kind, out var vitals))
        {
            return Invalid("kind", $"any of: {KindChoices} (or LOINC codes); all when left out");
        }

        if (vitals.Count == 0)
        {
            vitals = [.. VitalCatalogue.All];
        }

        Resolution? window = null;
        if (resolution is not null and not "raw")
        {
            if (!ResolutionExtensions.TryParseWireName(resolution, out var parsed))
            {
                return Invalid("resolution", "raw (the default), 1m, 1h or 1d");
            }

            window = parsed;
        }

        if (!TryReadRange(from, to, timeProvider, out var fromMs, out var toMs))
        {
            return Invalid("from", RangeRule);
        }

        if (toMs - fromMs > (long)MaxExportRange.TotalMilliseconds)
        {
            return Invalid("from", $"an export covers at most {MaxExportRange.TotalDays} days; export in parts");
        }

        if (window is { } w && new TrendScale(w).WindowsSpanned(fromMs, toMs) > TrendReader.MaxWindows * 10L)
        {
            return Invalid("resolution", "too many windows for one export; choose a coarser resolution or a shorter range");
        }

        var response = context.Response;
        response.ContentType = "text/csv; charset=utf-8";
        var name = $"{patientId}_{DateTimeOffset.FromUnixTimeMilliseconds(fromMs):yyyyMMdd'T'HHmm}_{window?.ToWireName() ?? "raw"}.csv".Replace(':', '-');
        response.Headers.ContentDisposition = $"attachment; filename=\"{name}\"";
        var writer = new StreamWriter(response.Body, new UTF8Encoding(false), bufferSize: 64 * 1024, leaveOpen: true);
        try
        {
            await WriteExportAsync(writer, patientId, vitals, window, fromMs, toMs, rawStore, reader, context.RequestAborted);
            await writer.FlushAsync(context.RequestAborted);
        }
        catch (Exception) when (!response.HasStarted)
        {
            // Nothing has gone out (the header line waits in the writer's buffer, which is dropped unwritten): the failure
            // is answered as one, not as a 200 file holding a header alone.
            response.Headers.ContentDisposition = default;
            response.ContentType = null;
            throw;
        }

        await writer.DisposeAsync();
        return TypedResults.Empty;
    }

    private static async Task WriteExportAsync(
        StreamWriter writer, string patientId, IReadOnlyList<VitalDefinition> vitals, Resolution? window, long fromMs, long toMs, IRawSeriesStore rawStore, TrendReader reader, CancellationToken cancellationToken)
    {
        if (window is null)
        {
            await writer.WriteLineAsync("time,kind,loinc,value,unit,device_id");
            var kinds = vitals.Select(v => v.Kind).ToList();
            await foreach (var reading in rawStore.StreamAsync(patientId, kinds, fromMs, toMs, cancellationToken))
            {
                var vital = VitalCatalogue.Get(reading.Kind);
                await writer.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                    $"{Iso(reading.TimestampMs)},{vital.Name},{vital.Loinc},{reading.Value:R},{vital.Unit},{reading.DeviceId}"));
            }
        }
        else
        {
            await writer.WriteLineAsync("start,kind,loinc,unit,count,min,max,mean,std_dev,sum");
            foreach (var vital in vitals)
            {
                foreach (var point in await reader.ReadWindowsAsync(patientId, vital.Kind, window.Value, fromMs, toMs, cancellationToken))
                {
                    await writer.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                        $"{Iso(point.StartMs)},{vital.Name},{vital.Loinc},{vital.Unit},{point.Count},{point.Min:R},{point.Max:R},{point.Mean:R},{point.StandardDeviation:R},{point.Sum:R}"));
                }
            }
        }
    }

    private static async Task<Results<Ok<DailySummary>, ValidationProblem>> GetDailyAsync(
        string patientId,
        DateOnly? from,
        DateOnly? to,
        string? timeZone,
        int? stepsGoal,
        TrendReader reader,
        TimeProvider timeProvider,
        CancellationToken cancellationToken)
    {
        if (!Identifier.IsValid(patientId))
        {
            return InvalidPatient();
        }

        if (!TryFindTimeZone(timeZone, out var zone))
        {
            return Invalid("timeZone", "an IANA time zone such as Europe/Berlin or America/New_York (UTC when left out)");
        }

        if (from is { } f && (f < FirstDay || f > LastDay))
        {
            return Invalid("from", DayRule);
        }

        if (to is { } t && (t < FirstDay || t > LastDay))
        {
            return Invalid("to", DayRule);
        }

        var goal = stepsGoal ?? DefaultStepsGoal;
        if (goal is < 1 or > 100_000)
        {
            return Invalid("stepsGoal", "between 1 and 100000 steps");
        }

        var today = DateOnly.FromDateTime(TimeZoneInfo.ConvertTime(timeProvider.GetUtcNow(), zone).DateTime);
        var lastDay = to ?? today;
        var firstDay = from ?? lastDay.AddDays(-6);
        if (firstDay > lastDay)
        {
            return Invalid("from", to is null ? $"must be on or before 'to', which is today ({today:yyyy-MM-dd} in {zone.Id}) when not given" : "must be on or before 'to'");
        }

        if (lastDay.DayNumber - firstDay.DayNumber + 1 > MaxDays)
        {
            return Invalid("from", $"a summary covers at most {MaxDays} days");
        }

        // Days are read from 1-hour windows, so a day runs midnight to midnight in the patient's zone (to the hour).
        var fromMs = Math.Max(0, LocalMidnightMs(firstDay, zone));
        var toMs = LocalMidnightMs(lastDay.AddDays(1), zone);
        DateOnly DayOf(long ms) => DateOnly.FromDateTime(TimeZoneInfo.ConvertTime(DateTimeOffset.FromUnixTimeMilliseconds(ms), zone).DateTime);

        async Task<Dictionary<DateOnly, RollupWindow>> PerDayAsync(VitalKind kind)
        {
            var hours = await reader.ReadWindowsAsync(patientId, kind, Resolution.Hour, fromMs, toMs, cancellationToken);
            return hours.Where(h => h.StartMs >= fromMs).GroupBy(h => DayOf(h.StartMs)).ToDictionary(g => g.Key, g => TrendReader.Merge(g.First().StartMs, g));
        }

        var steps = await PerDayAsync(VitalKind.Steps);
        var resting = await PerDayAsync(VitalKind.RestingHeartRate);
        var sleep = await PerDayAsync(VitalKind.SleepDuration);
        var weight = await PerDayAsync(VitalKind.BodyWeight);

        var days = new List<DaySummary>(lastDay.DayNumber - firstDay.DayNumber + 1);
        for (var day = firstDay; day <= lastDay; day = day.AddDays(1))
        {
            long? daySteps = steps.TryGetValue(day, out var s) ? (long)Math.Round(s.Sum) : null;
            days.Add(new DaySummary(
                day,
                daySteps,
                daySteps is { } taken ? taken >= goal : null,
                resting.TryGetValue(day, out var r) ? Math.Round(r.Mean, 1) : null,
                sleep.TryGetValue(day, out var z) ? Math.Round(z.Sum, 2) : null,
                weight.TryGetValue(day, out var w) ? Math.Round(w.Last, 2) : null));
        }

        return TypedResults.Ok(new DailySummary(patientId, zone.Id, goal, days));
    }

    private static async Task<Results<Ok<LiveView>, ValidationProblem>> GetLiveAsync(string patientId, IGrainFactory grains)
    {
        if (!Identifier.IsValid(patientId))
        {
            return InvalidPatient();
        }

        return TypedResults.Ok(await LiveView.ReadAsync(grains, patientId));
    }

    /// <summary>Reads kind names (comma-separated or repeated); blood_pressure stands for its systolic and diastolic parts.</summary>
    private static bool TryParseKinds(string[]? values, out List<VitalDefinition> vitals)
    {
        vitals = [];
        foreach (var name in (values ?? []).SelectMany(value => value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)))
        {
            if (VitalCatalogue.TryFind(name, out var vital))
            {
                vitals.Add(vital);
            }
            else if (VitalCatalogue.TryFindPanel(name, out var panel))
            {
                vitals.Add(panel.First);
                vitals.Add(panel.Second);
            }
            else
            {
                return false;
            }
        }

        vitals = [.. vitals.Distinct()];
        return true;
    }

    /// <summary>
    /// The range asked for, in Unix milliseconds: by default the day up to <paramref name="to"/> (or now). Nothing is
    /// stored from before 1970, so a range is cut there; false when nothing is left of it.
    /// </summary>
    private static bool TryReadRange(DateTimeOffset? from, DateTimeOffset? to, TimeProvider timeProvider, out long fromMs, out long toMs)
    {
        toMs = (to ?? timeProvider.GetUtcNow()).ToUnixTimeMilliseconds();
        fromMs = Math.Max(0, from?.ToUnixTimeMilliseconds() ?? toMs - (long)TimeSpan.FromDays(1).TotalMilliseconds);
        return fromMs < toMs;
    }

    private const string RangeRule = "must be before 'to', and the range after 1970-01-01T00:00:00Z (nothing is stored before)";

    // The days a summary may name: a day ending before 1970 holds nothing; the calendar's last day has no day after it.
    private static readonly DateOnly FirstDay = DateOnly.FromDateTime(DateTime.UnixEpoch);
    private static readonly DateOnly LastDay = DateOnly.MaxValue.AddDays(-1);
    private static readonly string DayRule = $"a day from {FirstDay:yyyy-MM-dd} to {LastDay:yyyy-MM-dd}";

    /// <summary>
    /// The IANA time zone <paramref name="id"/> names (UTC when null). False for anything else: an id is looked up
    /// among the system's zone files only when it has a zone id's shape, so it can name no other file or folder.
    /// </summary>
    private static bool TryFindTimeZone(string? id, out TimeZoneInfo zone)
    {
        zone = TimeZoneInfo.Utc;
        if (id is null)
        {
            return true;
        }

        if (id.Length is 0 or > 64 || id.Contains("..", StringComparison.Ordinal) || id[0] == '/'
            || !id.All(c => char.IsAsciiLetterOrDigit(c) || c is '/' or '_' or '-' or '+'))
        {
            return false;
        }

        try
        {
            zone = TimeZoneInfo.FindSystemTimeZoneById(id);
            return true;
        }
        catch (Exception exception) when (exception is TimeZoneNotFoundException or InvalidTimeZoneException
            or System.Security.SecurityException or IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private static long LocalMidnightMs(DateOnly day, TimeZoneInfo zone)
    {
        var local = day.ToDateTime(TimeOnly.MinValue, DateTimeKind.Unspecified);
        while (zone.IsInvalidTime(local))
        {
            local = local.AddHours(1);
        }

        return new DateTimeOffset(local, zone.GetUtcOffset(local)).ToUnixTimeMilliseconds();
    }

    private static string Iso(long ms) => DateTimeOffset.FromUnixTimeMilliseconds(ms).ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);

    internal static TrendPoint ToPoint(RollupWindow window) =>
        new(DateTimeOffset.FromUnixTimeMilliseconds(window.StartMs), window.Count, window.Min, window.Max, window.Mean, window.Sum);

    private static ValidationProblem InvalidPatient() => Invalid("patientId", Identifier.Shape);

    private static ValidationProblem Invalid(string parameter, string message) =>
        TypedResults.ValidationProblem(new Dictionary<string, string[]> { [parameter] = [message] });
}
