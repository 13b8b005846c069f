using System.Globalization;
using System.Security.Claims;
using Hl7.Fhir.Model;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Extensions.Options;
using Telemetry.Api.Audit;
using Telemetry.Api.Security;
using Telemetry.Api.Trends;
using Telemetry.Core.Rollups;
using Telemetry.Core.Storage;
using Telemetry.Ingest;
using Telemetry.Storage.Audit;
using Telemetry.Storage.Retention;

namespace Telemetry.Api.Fhir;

/// <summary>
/// FHIR R4 for the EMR: Observation search over a patient's vitals (rollup windows at a resolution that suits the range,
/// raw readings for short ranges), <c>$lastn</c> and <c>$stats</c>, and the CapabilityStatement that says exactly that.
/// </summary>
public static class FhirEndpoints
{
    public const int DefaultCount = 100;
    public const int MaxCount = 1_000;
    public const int MaxLastN = 100;

    /// <summary>A search without a lower date bound covers this long before its upper bound.</summary>
    public static readonly TimeSpan DefaultSearchRange = TimeSpan.FromDays(30);

    // How far ahead of the clock a search range may end: the most a reading may be stamped ahead (MaxFutureSkew, at most a day).
    private const long MaxAheadMs = 86_400_000;

    /// <summary>The most a search by POST sends of parameters, as a URL holds.</summary>
    private const int MaxSearchBodyBytes = 8 * 1024;

    // A search by POST's form: parameters as a URL's, bounded as a whole (a body with no length is held to it too).
    private static readonly Microsoft.AspNetCore.Http.Features.FormOptions SearchForm = new()
    {
        ValueCountLimit = 64,
        KeyLengthLimit = 64,
        ValueLengthLimit = MaxSearchBodyBytes,
        BufferBodyLengthLimit = MaxSearchBodyBytes,
    };

    /// <summary>The most a <c>$stats</c> by POST sends: its Parameters resource.</summary>
    private const int MaxStatsBodyBytes = 64 * 1024;

    /// <summary>The longest period <c>$stats</c> summarises.</summary>
    public static readonly TimeSpan MaxStatsPeriod = TimeSpan.FromDays(366 * 5);

    private static readonly HashSet<string> SearchParameters = ["patient", "subject", "code", "category", "date", "_count", "_offset", "_sort", "resolution"];
    private static readonly HashSet<string> LastNParameters = ["patient", "subject", "code", "category", "date", "max"];
    private static readonly HashSet<string> AuditEventParameters = ["patient", "entity", "date", "_count", "_before"];
    private static readonly HashSet<string> StatsParameters = ["subject", "patient", "code", "system", "coding", "duration", "statistic", "include", "limit"];

    /// <summary>The CORS policy of <c>/fhir</c>: any origin, for browser-based SMART apps.</summary>
    public const string CorsPolicy = "fhir";

    public static IEndpointRouteBuilder MapFhirEndpoints(this IEndpointRouteBuilder routes)
    {
        var fhir = routes.MapGroup("/fhir").RequireRateLimiting(TelemetryAuthentication.ApiRateLimit).RequireCors(CorsPolicy).Audited().AddEndpointFilter<FhirGuardFilter>().ExcludeFromDescription();
        fhir.MapGet("/metadata", async (HttpRequest request, SmartConfiguration smart) =>
            new FhirResult(CapabilityStatementFactory.Create(BaseUrl(request), await smart.TryProviderAsync(request.HttpContext.RequestAborted))));
        fhir.MapGet("/Observation", SearchAsync);
        fhir.MapPost("/Observation/_search", SearchByPostAsync);
        fhir.MapGet("/Observation/$lastn", LastNAsync);
        fhir.MapGet("/Observation/$stats", StatsFromQueryAsync);
        fhir.MapPost("/Observation/$stats", StatsFromBodyAsync);
        fhir.MapGet("/AuditEvent", SearchAuditEventsAsync);
        fhir.MapGet("/AuditEvent/{id}", ReadAuditEventAsync);
        // Methods no FHIR request here takes (a browser's CORS preflight is answered before routing picks these).
        fhir.MapMethods("/{**rest}", ["HEAD", "OPTIONS"], (HttpResponse response) =>
        {
            response.Headers.Allow = "GET, POST";
            return StatusOutcome(StatusCodes.Status405MethodNotAllowed);
        });
        fhir.MapMethods("/{**rest}", ["GET", "POST", "PUT", "PATCH", "DELETE"], (string? rest) =>
            FhirResult.Error(StatusCodes.Status404NotFound, OperationOutcome.IssueType.NotSupported,
                $"'{rest}' is not served here: this server supports Observation search (GET, or POST to Observation/_search), Observation/$lastn, Observation/$stats, AuditEvent search and read, and metadata."));
        SmartConfiguration.Map(routes);
        return routes;
    }

    /// <summary>What a bodiless error answer under <c>/fhir</c> says, as an OperationOutcome (a method not served, 405).</summary>
    public static FhirResult StatusOutcome(int statusCode) => statusCode == StatusCodes.Status405MethodNotAllowed
        ? FhirResult.Error(statusCode, OperationOutcome.IssueType.NotSupported, "This method is not served here: searches, reads and metadata are GET (an Observation search POST to _search too), and $stats is GET or POST.")
        : FhirResult.Error(statusCode, OperationOutcome.IssueType.Processing, $"{statusCode} {Microsoft.AspNetCore.WebUtilities.ReasonPhrases.GetReasonPhrase(statusCode)}.");

    /// <summary>
    /// FHIR's search by POST (which keeps a long query, or the patient's id, out of the URL): the parameters of a form
    /// body, with any in the URL, answered as the same search by GET is (its paging links are GETs of the same search).
    /// </summary>
    private static async Task<FhirResult> SearchByPostAsync(
        HttpRequest request, TrendReader reader, TimeProvider timeProvider, IOptions<IngestOptions> ingest, IOptions<RetentionOptions> retention, CancellationToken cancellationToken)
    {
        // A search's parameters are what a URL holds (8 KiB): its audit record names them all.
        if (RefuseBody(request, ["application/x-www-form-urlencoded"], MaxSearchBodyBytes,
            "A search by POST sends its parameters as application/x-www-form-urlencoded.",
            $"A search by POST sends at most {MaxSearchBodyBytes} bytes of parameters.") is { } refused)
        {
            return refused;
        }

        IFormCollection form;
        try
        {
            form = await request.ReadFormAsync(SearchForm, cancellationToken);
        }
        catch (InvalidDataException exception)
        {
            return FhirResult.Invalid($"The search's form could not be read: {exception.Message}");
        }
        var parameters = new Microsoft.AspNetCore.Http.Extensions.QueryBuilder();
        foreach (var (name, values) in request.Query.Concat(form))
        {
            foreach (var value in values)
            {
                parameters.Add(name, value ?? string.Empty);
            }
        }

        // The search, its refusals, its links and its audit record read the request's query: the body's are put there.
        request.QueryString = parameters.ToQueryString();

        // The guard read the URL's _format before the body was: one in the body asks for a format as much.
        if (!FhirGuardFilter.AcceptsJson(request))
        {
            return FhirGuardFilter.NotAcceptable();
        }
        return await SearchAsync(request, reader, timeProvider, ingest, retention, cancellationToken);
    }

    private static async Task<FhirResult> SearchAsync(
        HttpRequest request, TrendReader reader, TimeProvider timeProvider, IOptions<IngestOptions> ingest, IOptions<RetentionOptions> retention, CancellationToken cancellationToken)
    {
        var query = request.Query;

        // The patient first: one out of reach is refused as such (and audited as denied), whatever else is asked.
        if (!FhirParameters.TryReadPatient(query, out var patientId, out var error, "patient", "subject"))
        {
            return FhirResult.Invalid(error!);
        }

        if (await FhirGuardFilter.ForbiddenAsync(request.HttpContext, patientId) is { } forbidden)
        {
            return forbidden;
        }

        if (FhirGuardFilter.RefuseUnknown(request, SearchParameters) is { } refused)
        {
            return refused;
        }

        if (!TrySelectSeries(query, request.HttpContext.User, out var series, out error)
            || !TryReadRange(query, timeProvider, DefaultSearchRange, out var fromMs, out var toMs, out error)
            || !FhirParameters.TryReadCount(query, "_count", DefaultCount, int.MaxValue, out var count, out error)
            || !FhirParameters.TryReadCount(query, "_offset", 0, int.MaxValue, out var offset, out error))
        {
            return FhirResult.Invalid(error!);
        }

        // A server may return fewer than _count asks for: a larger page is cut to the most it serves.
        count = Math.Min(count, MaxCount);

        var sort = query["_sort"].ToString();
        if (sort is not ("" or "date" or "-date"))
        {
            return FhirResult.NotSupported($"'_sort={sort}' is not supported; sort by date or -date.");
        }

        if (!TrendScale.TryParse(query["resolution"].Count == 0 ? null : query["resolution"].ToString(), out var asked))
        {
            return FhirResult.Invalid("'resolution' must be auto, raw, 1m, 1h or 1d.");
        }

        var scale = asked ?? TrendScale.Auto(fromMs, toMs, retention.Value, timeProvider.GetUtcNow().ToUnixTimeMilliseconds());
        if (scale.WindowsSpanned(fromMs, toMs) > TrendReader.MaxWindows)
        {
            return FhirResult.Error(StatusCodes.Status400BadRequest, OperationOutcome.IssueType.TooCostly,
                $"A {scale.WireName} search spans at most {TrendReader.MaxWindows} windows; narrow 'date' or choose a coarser 'resolution'.");
        }

        if (scale.IsRaw && toMs - fromMs > (long)TrendReader.MaxRawRange.TotalMilliseconds)
        {
            return FhirResult.Error(StatusCodes.Status400BadRequest, OperationOutcome.IssueType.TooCostly,
                $"Raw readings are searched at most {TrendReader.MaxRawRange.TotalDays} days at a time; narrow 'date' or choose 'resolution=1m'.");
        }

        var matches = fromMs < toMs ? await ReadSeriesAsync(reader, patientId, series, scale, fromMs, toMs, timeProvider.GetUtcNow().ToUnixTimeMilliseconds(), cancellationToken) : [];
        if (matches is null && asked is null)
        {
            // Auto chose raw readings for a short range, but they are too dense to list: minutes say it better.
            scale = new TrendScale(Resolution.Minute);
            matches = await ReadSeriesAsync(reader, patientId, series, scale, fromMs, toMs, timeProvider.GetUtcNow().ToUnixTimeMilliseconds(), cancellationToken);
        }

        if (matches is null)
        {
            return FhirResult.Error(StatusCodes.Status400BadRequest, OperationOutcome.IssueType.TooCostly,
                $"More than {TrendReader.MaxRawReadings} raw readings of one code in the range; narrow 'date' or choose resolution=1m.");
        }

        var ordered = sort == "-date"
            ? matches.OrderByDescending(m => m.TimeMs).ThenBy(m => m.Order)
            : matches.OrderBy(m => m.TimeMs).ThenBy(m => m.Order);
        var page = ordered.Skip(offset).Take(count).ToList();

        var bundle = new Bundle
        {
            Id = Guid.NewGuid().ToString(),
            Type = Bundle.BundleType.Searchset,
            Timestamp = timeProvider.GetUtcNow(),
            Total = matches.Count,
        };
        // The links name the range and resolution this page was read with, so the next page is of the same list: one
        // left to its defaults (the last 30 days to now, a resolution chosen by the range) would move with the clock.
        // A range that ends ahead (today, le2100) ends in the links with the window of the latest time a reading may be
        // stamped now (the clock and MaxFutureSkew): windows the clock opens later do not join the list and push its
        // entries from one page to the next.
        var latestMs = timeProvider.GetUtcNow().ToUnixTimeMilliseconds() + (long)ingest.Value.MaxFutureSkew.TotalMilliseconds;
        var linkToMs = Math.Min(toMs, scale.Window is { } window ? window.WindowStart(latestMs) + window.Milliseconds() : latestMs + 1);
        List<KeyValuePair<string, string?>> self =
        [
            .. SearchLinkParameters(query).Where(p => p.Key is not ("date" or "resolution")),
            new("date", "ge" + Instant(fromMs)),
            new("date", "lt" + Instant(linkToMs > fromMs ? linkToMs : toMs)),
            new("resolution", scale.WireName),
        ];
        var url = BaseUrl(request) + "/Observation";
        bundle.Link.Add(Link("self", url, self, offset, count));
        bundle.Link.Add(Link("first", url, self, 0, count));
        if (offset > 0)
        {
            bundle.Link.Add(Link("previous", url, self, Math.Max(0, offset - count), count));
        }

        if (count > 0 && (long)offset + count < matches.Count)
        {
            bundle.Link.Add(Link("next", url, self, offset + count, count));
            bundle.Link.Add(Link("last", url, self, (matches.Count - 1) / count * count, count));
        }

        foreach (var match in page)
        {
            AddEntry(bundle, match.Build());
        }

        return new FhirResult(bundle);
    }

    private static async Task<FhirResult> LastNAsync(HttpRequest request, IRawSeriesStore rawStore, TimeProvider timeProvider, CancellationToken cancellationToken)
    {
        var query = request.Query;

        // The patient first: one out of reach is refused as such (and audited as denied), whatever else is asked.
        if (!FhirParameters.TryReadPatient(query, out var patientId, out var error, "patient", "subject"))
        {
            return FhirResult.Invalid(error!);
        }

        if (await FhirGuardFilter.ForbiddenAsync(request.HttpContext, patientId) is { } forbidden)
        {
            return forbidden;
        }

        if (FhirGuardFilter.RefuseUnknown(request, LastNParameters) is { } refused)
        {
            return refused;
        }

        if (query["category"].Count == 0 && query["code"].Count == 0)
        {
            return FhirResult.Invalid("$lastn needs 'category' or 'code' (for example category=vital-signs).");
        }

        if (!TrySelectSeries(query, request.HttpContext.User, out var series, out error)
            || !FhirParameters.TryReadCount(query, "max", 1, MaxLastN, out var max, out error))
        {
            return FhirResult.Invalid(error!);
        }

        // Without a date, the latest readings the store still holds, however old.
        var fromMs = 0L;
        var toMs = timeProvider.GetUtcNow().AddDays(1).ToUnixTimeMilliseconds();
        if (!FhirParameters.TryNarrowByDates(query["date"], ref fromMs, ref toMs, out error))
        {
            return FhirResult.Invalid(error!);
        }

        var bundle = new Bundle { Id = Guid.NewGuid().ToString(), Type = Bundle.BundleType.Searchset, Timestamp = timeProvider.GetUtcNow() };
        if (max > 0 && fromMs < toMs && series.Count > 0)
        {
            var kinds = series.SelectMany(s => s.Parts).Select(v => v.Kind).Distinct().ToList();
            var latest = await rawStore.ReadLatestAsync(patientId, kinds, fromMs, toMs, max, cancellationToken);
            foreach (var one in series)
            {
                var readings = Pair(one, latest.Where(r => one.Parts.Any(p => p.Kind == r.Kind)));
                foreach (var parts in readings.OrderByDescending(p => p.TimeMs).Take(max))
                {
                    AddEntry(bundle, ObservationFactory.FromReadings(patientId, one, parts.Parts));
                }
            }
        }

        bundle.Total = bundle.Entry.Count;
        bundle.Link.Add(new Bundle.LinkComponent { Relation = "self", Url = request.GetEncodedUrlWithoutFormat() });
        return new FhirResult(bundle);
    }

    private static Task<FhirResult> StatsFromQueryAsync(HttpRequest request, TrendReader reader, TimeProvider timeProvider, CancellationToken cancellationToken)
    {
        var query = request.Query;
        var statsRequest = new StatsRequest(
            [.. query["subject"].Concat(query["patient"]).Select(v => v ?? string.Empty)],
            [.. query["code"].SelectMany(v => (v ?? string.Empty).Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))],
            query["system"].Count == 0 ? null : query["system"].ToString(),
            [.. FhirParameters.Tokens(query["coding"])],
            query["duration"].Count == 0 ? null : query["duration"].ToString(),
            null,
            [.. query["statistic"].SelectMany(v => (v ?? string.Empty).Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))],
            query["include"].ToString());
        return StatsAsync(request.HttpContext, statsRequest, reader, timeProvider, cancellationToken, FhirGuardFilter.RefuseUnknown(request, StatsParameters));
    }

    /// <summary>
    /// The refusal of a POST's body before it is read: 415 (<paramref name="wrongType"/>) unless its content type is one
    /// of <paramref name="types"/>, 413 (<paramref name="tooLarge"/>) when its length is over <paramref name="maxBytes"/>.
    /// </summary>
    private static FhirResult? RefuseBody(HttpRequest request, string[] types, long maxBytes, string wrongType, string tooLarge)
    {
        if (!Microsoft.Net.Http.Headers.MediaTypeHeaderValue.TryParse(request.ContentType, out var type)
            || !types.Any(taken => type.MediaType.Equals(taken, StringComparison.OrdinalIgnoreCase)))
        {
            return FhirResult.Error(StatusCodes.Status415UnsupportedMediaType, OperationOutcome.IssueType.NotSupported, wrongType);
        }

        return request.ContentLength > maxBytes ? FhirResult.Error(StatusCodes.Status413PayloadTooLarge, OperationOutcome.IssueType.TooLong, tooLarge) : null;
    }

    private static async Task<FhirResult> StatsFromBodyAsync(HttpRequest request, TrendReader reader, TimeProvider timeProvider, CancellationToken cancellationToken)
    {
        // A Parameters of a few codes and statistics is small: a body far past that is refused (as it is read, below,
        // when it comes with no length).
        if (RefuseBody(request, ["application/fhir+json", "application/json", "application/json+fhir"], MaxStatsBodyBytes,
            "$stats by POST sends a Parameters resource as application/fhir+json.",
            $"$stats by POST sends at most {MaxStatsBodyBytes} bytes.") is { } refused)
        {
            return refused;
        }

        if (request.HttpContext.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } bodySize)
        {
            bodySize.MaxRequestBodySize = MaxStatsBodyBytes;
        }

        Parameters parameters;
        try
        {
            parameters = await System.Text.Json.JsonSerializer.DeserializeAsync<Parameters>(request.Body, FhirResult.StrictOptions, cancellationToken)
                ?? throw new System.Text.Json.JsonException("empty body");
        }
        catch (Exception exception) when (exception is System.Text.Json.JsonException or Hl7.Fhir.Serialization.DeserializationFailedException)
        {
            return FhirResult.Error(StatusCodes.Status400BadRequest, OperationOutcome.IssueType.Structure,
                $"The body must be a FHIR Parameters resource in JSON: {exception.Message}");
        }

        string? Text(DataType? value) => value switch
        {
            null => null,
            ResourceReference reference => reference.Reference,
            PrimitiveType primitive => primitive.ToString(),
            _ => null,
        };
        IEnumerable<DataType?> Values(string name) => parameters.Parameter.Where(p => p.Name == name).Select(p => p.Value);

        var statsRequest = new StatsRequest(
            [.. Values("subject").Concat(Values("patient")).Select(Text).OfType<string>()],
            [.. Values("code").Select(Text).OfType<string>()],
            Values("system").Select(Text).FirstOrDefault(),
            [.. Values("coding").OfType<Coding>().Select(c => ((string?)c.System, c.Code ?? string.Empty))],
            Values("duration").Select(Text).FirstOrDefault(),
            Values("period").OfType<Period>().FirstOrDefault(),
            [.. Values("statistic").Select(Text).OfType<string>()],
            Values("include").Select(Text).FirstOrDefault());
        return await StatsAsync(request.HttpContext, statsRequest, reader, timeProvider, cancellationToken);
    }

    /// <summary><c>$stats</c> of one patient; <paramref name="refused"/>, the query's parameters refused, is answered once the patient is known to be in reach.</summary>
    private static async Task<FhirResult> StatsAsync(HttpContext http, StatsRequest statsRequest, TrendReader reader, TimeProvider timeProvider, CancellationToken cancellationToken, FhirResult? refused = null)
    {
        if (statsRequest.Subjects.Count != 1 || !FhirParameters.TryReadReference(statsRequest.Subjects[0], out var patientId))
        {
            return FhirResult.Invalid("$stats needs exactly one 'subject' (Patient/{id}).");
        }

        if (await FhirGuardFilter.ForbiddenAsync(http, patientId) is { } forbidden)
        {
            return forbidden;
        }

        if (refused is not null)
        {
            return refused;
        }

        var series = new List<FhirSeries>();
        if (statsRequest.System is not (null or FhirVitals.Loinc))
        {
            return FhirResult.Invalid($"'system' must be {FhirVitals.Loinc}: every code this server holds is LOINC.");
        }

        foreach (var (system, code) in statsRequest.Codes.Select(c => ((string?)FhirVitals.Loinc, c)).Concat(statsRequest.Codings))
        {
            if (system is not (null or FhirVitals.Loinc) || !FhirVitals.TryFindByCode(code, out var found))
            {
                return FhirResult.Invalid($"'{code}' is not a LOINC code this server holds; known: {string.Join(", ", FhirVitals.All.Select(s => s.Code))}.");
            }

            if (SmartScopes.ReadableCategories(http.User) is { } readable && !readable.Contains(found.Category))
            {
                return FhirResult.Error(StatusCodes.Status403Forbidden, OperationOutcome.IssueType.Forbidden,
                    $"This token's scopes do not read the {found.Category} category, which '{code}' is filed under.");
            }

            if (!series.Contains(found))
            {
                series.Add(found);
            }
        }

        if (series.Count == 0)
        {
            return FhirResult.Invalid("$stats needs 'code' (with system http://loinc.org) or 'coding'.");
        }

        if (statsRequest.Statistics.Count == 0)
        {
            return FhirResult.Invalid($"$stats needs 'statistic': any of {string.Join(", ", ObservationFactory.Statistics)}.");
        }

        var unknown = statsRequest.Statistics.Where(s => !ObservationFactory.Statistics.Contains(s)).ToList();
        if (unknown.Count > 0)
        {
            return FhirResult.NotSupported($"Statistic(s) {string.Join(", ", unknown)} not supported; this server computes {string.Join(", ", ObservationFactory.Statistics)}.");
        }

        if (statsRequest.Include is "true")
        {
            return FhirResult.NotSupported("'include=true' is not supported: search Observation over the same period for the readings themselves.");
        }

        long fromMs, toMs;
        if (statsRequest.Period is { } period)
        {
            if (!TryPeriodBound(period.Start, start: true, out fromMs) || !TryPeriodBound(period.End, start: false, out toMs))
            {
                return FhirResult.Invalid("'period' needs a start and an end.");
            }
        }
        else if (decimal.TryParse(statsRequest.Duration, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var hours) && hours > 0)
        {
            toMs = timeProvider.GetUtcNow().ToUnixTimeMilliseconds();
            fromMs = toMs - (long)(Math.Min(hours, (decimal)MaxStatsPeriod.TotalHours) * 3_600_000m);
        }
        else
        {
            return FhirResult.Invalid("$stats needs 'duration' (hours back from now, more than 0) or 'period'.");
        }

        if (fromMs >= toMs || toMs - fromMs > (long)MaxStatsPeriod.TotalMilliseconds)
        {
            return FhirResult.Invalid($"The period must have its start before its end and span at most {MaxStatsPeriod.TotalDays} days.");
        }

        var statistics = statsRequest.Statistics.Distinct().ToList();
        var result = new Parameters();
        foreach (var one in series)
        {
            var parts = new List<RollupWindow?>();
            foreach (var part in one.Parts)
            {
                parts.Add(await reader.SummariseAsync(patientId, part.Kind, fromMs, toMs, cancellationToken));
            }

            result.Add("statistics", ObservationFactory.FromStatistics(patientId, one, fromMs, toMs, parts, statistics));
        }

        return new FhirResult(result);
    }

    private static bool TryPeriodBound(string? value, bool start, out long ms)
    {
        ms = 0;
        if (value is null || !FhirParameters.TryParseDate(value, out var startMs, out var endMs))
        {
            return false;
        }

        ms = start ? startMs : endMs;
        return true;
    }

    /// <summary>
    /// The series a search asks for, from <c>code</c> and <c>category</c> (every series when neither narrows it), of
    /// the categories the caller's scopes read.
    /// </summary>
    private static bool TrySelectSeries(IQueryCollection query, ClaimsPrincipal user, out List<FhirSeries> series, out string? error)
    {
        error = null;

        // The values of one category parameter are alternatives (OR); repeated ones must all match (AND).
        var readable = SmartScopes.ReadableCategories(user);
        bool InCategories(FhirSeries candidate) =>
            (readable is null || readable.Contains(candidate.Category))
            && query["category"].All(values => FhirParameters.Tokens(values).Any(t => t.Code == candidate.Category && t.System is null or FhirVitals.CategorySystem));

        // The values of one code parameter are alternatives (OR); repeated code parameters must all match (AND).
        List<FhirSeries>? byCode = null;
        foreach (var values in query["code"])
        {
            var named = new List<FhirSeries>();
            foreach (var (system, code) in FhirParameters.Tokens(values))
            {
                if (system is null or FhirVitals.Loinc && FhirVitals.TryFindByCode(code, out var found) && !named.Contains(found))
                {
                    named.Add(found);
                }
            }

            byCode = byCode is null ? named : [.. byCode.Where(named.Contains)];
        }

        series = [.. (byCode ?? [.. FhirVitals.All]).Where(InCategories)];
        return true;
    }

    /// <summary>The range a search covers: narrowed by <c>date</c>, otherwise the <paramref name="defaultRange"/> up to now.</summary>
    private static bool TryReadRange(IQueryCollection query, TimeProvider timeProvider, TimeSpan defaultRange, out long fromMs, out long toMs, out string? error)
    {
        fromMs = long.MinValue;
        toMs = long.MaxValue;
        if (!FhirParameters.TryNarrowByDates(query["date"], ref fromMs, ref toMs, out error))
        {
            return false;
        }

        var now = timeProvider.GetUtcNow().ToUnixTimeMilliseconds();
        if (toMs == long.MaxValue)
        {
            toMs = Math.Max(now + 1, fromMs == long.MinValue ? now + 1 : Math.Min(fromMs + (long)defaultRange.TotalMilliseconds, now + 1));
        }

        if (fromMs == long.MinValue)
        {
            // Only an end given: the default range up to it, or up to now when it lies ahead (nothing is stored there).
            fromMs = Math.Min(toMs, now + 1) - (long)defaultRange.TotalMilliseconds;
        }

        // An end far ahead (an open-ended search, le2100) ends a day ahead, past any reading's allowed skew: the range's
        // length, which chooses the windows and bounds them, is that of what can be stored.
        toMs = Math.Min(toMs, now + MaxAheadMs);

        // Nothing is stored from before 1970: a range is cut there (one wholly before it finds nothing). Nor from further
        // back than the most day windows a search spans (10,080, 27 years, before its end; a day less, as the range's
        // ends need not fall on midnight): a reading is taken at most BackfillHorizon (10 years at most) before it
        // comes, so an "all history" search (ge1900) reads every day a store younger than 17 years can hold, rather
        // than being refused.
        fromMs = Math.Max(Math.Max(0, fromMs), toMs - ((TrendReader.MaxWindows - 1) * 86_400_000L));
        toMs = Math.Max(fromMs, toMs);
        return true;
    }

    /// <summary>One matching Observation, built only if it lands on the page asked for.</summary>
    private sealed record Match(long TimeMs, int Order, Func<Observation> Build);

    /// <summary>The matches of every series; null when raw readings were asked for and one series has too many.</summary>
    private static async Task<List<Match>?> ReadSeriesAsync(
        TrendReader reader, string patientId, List<FhirSeries> series, TrendScale scale, long fromMs, long toMs, long nowMs, CancellationToken cancellationToken)
    {
        var matches = new List<Match>();
        for (var order = 0; order < series.Count; order++)
        {
            var one = series[order];
            var index = order;
            if (scale.Window is { } resolution)
            {
                var byStart = new SortedDictionary<long, RollupWindow?[]>();
                for (var i = 0; i < one.Parts.Count; i++)
                {
                    foreach (var window in await reader.ReadWindowsAsync(patientId, one.Parts[i].Kind, resolution, fromMs, toMs, cancellationToken))
                    {
                        var slot = byStart.TryGetValue(window.StartMs, out var existing) ? existing : byStart[window.StartMs] = new RollupWindow?[one.Parts.Count];
                        slot[i] = window;
                    }
                }

                matches.AddRange(byStart.Select(pair => new Match(pair.Key, index, () => ObservationFactory.FromWindow(patientId, one, resolution, pair.Value, nowMs))));
                continue;
            }

            var readings = new List<StoredReading>();
            foreach (var part in one.Parts)
            {
                var some = await reader.ReadRawAsync(patientId, part.Kind, fromMs, toMs, TrendReader.MaxRawReadings + 1, cancellationToken);
                if (some.Count > TrendReader.MaxRawReadings)
                {
                    return null;
                }

                readings.AddRange(some);
            }

            matches.AddRange(Pair(one, readings).Select(p => new Match(p.TimeMs, index, () => ObservationFactory.FromReadings(patientId, one, p.Parts))));
        }

        return matches;
    }

    /// <summary>Readings of a series as Observations' parts: a panel's parts paired by device and time.</summary>
    private static IEnumerable<(long TimeMs, StoredReading?[] Parts)> Pair(FhirSeries series, IEnumerable<StoredReading> readings)
    {
        if (!series.IsPanel)
        {
            return readings.Select(r => (r.TimestampMs, new StoredReading?[] { r }));
        }

        var paired = new Dictionary<(string, long), StoredReading?[]>();
        foreach (var reading in readings)
        {
            var key = (reading.DeviceId, reading.TimestampMs);
            var slot = paired.TryGetValue(key, out var existing) ? existing : paired[key] = new StoredReading?[series.Parts.Count];
            for (var i = 0; i < series.Parts.Count; i++)
            {
                if (series.Parts[i].Kind == reading.Kind)
                {
                    slot[i] = reading;
                }
            }
        }

        return paired.Select(pair => (pair.Key.Item2, pair.Value));
    }

    /// <summary>One record of the audit log as an AuditEvent, by its sequence number (its id, and its entry's fullUrl in a search); for admins only.</summary>
    private static async Task<FhirResult> ReadAuditEventAsync(string id, HttpRequest request, AuditLog audit)
    {
        if (AuditLogRefused(request) is { } refused)
        {
            return refused;
        }

        // The newest record before the one after it: the record itself, unless it is not (or no longer) in the log.
        var record = long.TryParse(id, NumberStyles.None, CultureInfo.InvariantCulture, out var seq) && seq is > 0 and < long.MaxValue
            ? (await System.Threading.Tasks.Task.Run(() => audit.Query(null, null, null, null, 1, seq + 1))).FirstOrDefault()
            : null;
        if (record is null || record.Seq != seq)
        {
            return FhirResult.Error(StatusCodes.Status404NotFound, OperationOutcome.IssueType.NotFound, $"No AuditEvent '{id}' in this server's audit log.");
        }

        if (record.PatientId is not null)
        {
            Audit.AuditFilter.ReadsPatient(request.HttpContext, record.PatientId);
        }

        return new FhirResult(AuditEventFactory.Create(record));
    }

    /// <summary>A 403 unless the caller may read the audit log: an admin, with a token that carries no SMART scopes or one that writes every resource.</summary>
    private static FhirResult? AuditLogRefused(HttpRequest request) => SmartScopes.AllowsAdministration(request.HttpContext.User) ? null
        : FhirResult.Error(StatusCodes.Status403Forbidden, OperationOutcome.IssueType.Forbidden,
            "Only an admin may read the audit log, with a token that carries no SMART scopes or one that writes every resource (user/*.*).");

    /// <summary>The audit log as AuditEvents, newest first; for admins only.</summary>
    private static async Task<FhirResult> SearchAuditEventsAsync(HttpRequest request, AuditLog audit, TimeProvider timeProvider)
    {
        if (AuditLogRefused(request) is { } forbidden)
        {
            return forbidden;
        }

        if (FhirGuardFilter.RefuseUnknown(request, AuditEventParameters) is { } refused)
        {
            return refused;
        }

        string? patientId = null;
        if ((request.Query.ContainsKey("patient") || request.Query.ContainsKey("entity"))
            && !FhirParameters.TryReadPatient(request.Query, out patientId, out var patientError, "patient", "entity"))
        {
            return FhirResult.Invalid(patientError!);
        }

        if (patientId is not null)
        {
            Audit.AuditFilter.ReadsPatient(request.HttpContext, patientId);
        }

        var (fromMs, toMs) = (long.MinValue, long.MaxValue);
        if (!FhirParameters.TryReadCount(request.Query, "_count", DefaultCount, int.MaxValue, out var count, out var error)
            || !FhirParameters.TryNarrowByDates(request.Query["date"], ref fromMs, ref toMs, out error))
        {
            return FhirResult.Invalid(error!);
        }

        long? beforeSeq = null;
        if (request.Query["_before"].Count > 0)
        {
            if (!long.TryParse(request.Query["_before"].ToString(), NumberStyles.None, CultureInfo.InvariantCulture, out var before) || before <= 0)
            {
                return FhirResult.Invalid("'_before' is the sequence number of the last record of the page before (from its 'next' link).");
            }

            beforeSeq = before;
        }

        count = Math.Min(count, MaxCount);
        DateTimeOffset? from = fromMs == long.MinValue ? null : DateTimeOffset.FromUnixTimeMilliseconds(Math.Max(0, fromMs));
        DateTimeOffset? to = toMs == long.MaxValue ? null : DateTimeOffset.FromUnixTimeMilliseconds(Math.Clamp(toMs, 0, DateTimeOffset.MaxValue.ToUnixTimeMilliseconds()));
        var records = await System.Threading.Tasks.Task.Run(() => audit.Query(patientId, null, from, to, count, beforeSeq));

        // No total: counting every match would read the whole log. A full page links to the next (older) one: the same
        // search, from before this page's last record in the chain, so that no record is skipped or shown twice however
        // the clock stepped while they were written.
        var bundle = new Bundle { Id = Guid.NewGuid().ToString(), Type = Bundle.BundleType.Searchset, Timestamp = timeProvider.GetUtcNow() };
        bundle.Link.Add(new Bundle.LinkComponent { Relation = "self", Url = request.GetEncodedUrlWithoutFormat() });
        if (records.Count == count && count > 0)
        {
            List<KeyValuePair<string, string?>> next =
            [
                .. request.Query.Where(p => p.Key is "patient" or "entity" or "date").SelectMany(p => p.Value.Select(v => new KeyValuePair<string, string?>(p.Key, v))),
                new("_before", records[^1].Seq.ToString(CultureInfo.InvariantCulture)),
                new("_count", count.ToString(CultureInfo.InvariantCulture)),
            ];
            bundle.Link.Add(new Bundle.LinkComponent { Relation = "next", Url = QueryHelpers.AddQueryString(BaseUrl(request) + "/AuditEvent", next) });
        }

        foreach (var record in records)
        {
            bundle.Entry.Add(new Bundle.EntryComponent
            {
                FullUrl = $"{BaseUrl(request)}/AuditEvent/{record.Seq}",
                Resource = AuditEventFactory.Create(record),
                Search = new Bundle.SearchComponent { Mode = Bundle.SearchEntryMode.Match },
            });
        }

        return new FhirResult(bundle);
    }

    private static void AddEntry(Bundle bundle, Observation observation) =>
        bundle.Entry.Add(new Bundle.EntryComponent
        {
            FullUrl = "urn:uuid:" + observation.Id,
            Resource = observation,
            Search = new Bundle.SearchComponent { Mode = Bundle.SearchEntryMode.Match },
        });

    private static List<KeyValuePair<string, string?>> SearchLinkParameters(IQueryCollection query) =>
        [.. query.Where(p => SearchParameters.Contains(p.Key) && p.Key is not ("_offset" or "_count"))
            .SelectMany(p => p.Value.Select(v => new KeyValuePair<string, string?>(p.Key, v)))];

    private static Bundle.LinkComponent Link(string relation, string url, List<KeyValuePair<string, string?>> parameters, int offset, int count) =>
        new()
        {
            Relation = relation,
            Url = QueryHelpers.AddQueryString(url, [.. parameters, new("_count", count.ToString(CultureInfo.InvariantCulture)), new("_offset", offset.ToString(CultureInfo.InvariantCulture))]),
        };

    /// <summary>An instant as a FHIR <c>dateTime</c> to the millisecond, in UTC.</summary>
    private static string Instant(long ms) =>
        DateTimeOffset.FromUnixTimeMilliseconds(Math.Min(ms, DateTimeOffset.MaxValue.ToUnixTimeMilliseconds())).ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);

    private static string BaseUrl(HttpRequest request) => $"{request.Scheme}://{request.Host}{request.PathBase}/fhir";

    private static string GetEncodedUrlWithoutFormat(this HttpRequest request) =>
        QueryHelpers.AddQueryString($"{BaseUrl(request)}{request.Path.Value![5..]}",
            request.Query.Where(p => p.Key != "_format").SelectMany(p => p.Value.Select(v => new KeyValuePair<string, string?>(p.Key, v))));

    /// <summary>A <c>$stats</c> request, from the query string or a Parameters body.</summary>
    private sealed record StatsRequest(
        IReadOnlyList<string> Subjects,
        IReadOnlyList<string> Codes,
        string? System,
        IReadOnlyList<(string? System, string Code)> Codings,
        string? Duration,
        Period? Period,
        IReadOnlyList<string> Statistics,
        string? Include);
}
