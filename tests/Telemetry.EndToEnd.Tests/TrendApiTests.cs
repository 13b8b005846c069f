using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;

namespace Telemetry.EndToEnd.Tests;

/// <summary>The REST surface for dashboards and apps: several vitals per call, resolution by range, CSV, daily progress, OpenAPI.</summary>
[Collection("seeded")]
public sealed class TrendApiTests(SeededServer seeded)
{
    private TelemetryServer Server => seeded.Server;

    private string Trends => $"/api/patients/{SeededServer.PatientId}/trends";

    [Fact]
    public async Task Several_vitals_come_in_one_call_and_blood_pressure_stands_for_both_parts()
    {
        var from = seeded.Start.AddHours(2);
        using var document = await GetJsonAsync($"{Trends}?kind=heart_rate,blood_pressure&kind=spo2&from={Iso(from)}&to={Iso(from.AddHours(6))}&resolution=1h");

        var series = document.RootElement.GetProperty("series").EnumerateArray().ToList();
        Assert.Equal(["heart_rate", "systolic_bp", "diastolic_bp", "spo2"], series.Select(s => s.GetProperty("kind").GetString()));
        Assert.All(series, s => Assert.Equal(6, s.GetProperty("points").GetArrayLength()));
        Assert.Equal(seeded.Values("heart_rate", from, from.AddHours(6)).Count, series[0].GetProperty("points").EnumerateArray().Sum(p => p.GetProperty("count").GetInt64()));
    }

    [Theory]
    [InlineData(30, "raw")]
    [InlineData(12 * 60, "1m")]
    [InlineData(3 * 24 * 60, "1h")]
    [InlineData(90 * 24 * 60, "1d")]
    public async Task Auto_resolution_suits_the_range(int minutes, string expected)
    {
        var to = seeded.Start.AddDays(3);
        var from = to.AddMinutes(-minutes);
        var trend = await Server.Http.GetFromJsonAsync<TrendResponse>($"{Trends}?kind=heart_rate&from={Iso(from)}&to={Iso(to)}&resolution=auto");

        Assert.Equal(expected, trend!.Resolution);
        Assert.Equal(seeded.Values("heart_rate", from, to).Count, trend.TotalCount);
        if (expected == "raw")
        {
            Assert.Equal(seeded.Values("heart_rate", from, to), trend.Points.Select(p => p.Mean));
        }
    }

    [Fact]
    public async Task A_range_exports_as_csv_readings_or_windows()
    {
        var from = seeded.Start.AddHours(1);
        var to = from.AddHours(5);
        var raw = await Server.Http.GetAsync($"/api/patients/{SeededServer.PatientId}/export.csv?kind=heart_rate,blood_pressure&from={Iso(from)}&to={Iso(to)}");
        var hourly = await Server.Http.GetStringAsync($"/api/patients/{SeededServer.PatientId}/export.csv?kind=spo2&from={Iso(from)}&to={Iso(to)}&resolution=1h");

        Assert.Equal("text/csv", raw.Content.Headers.ContentType?.MediaType);
        Assert.Contains("attachment", raw.Content.Headers.ContentDisposition?.ToString(), StringComparison.Ordinal);
        var lines = (await raw.Content.ReadAsStringAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("time,kind,loinc,value,unit,device_id", lines[0]);
        Assert.Equal(seeded.Values("heart_rate", from, to).Count + seeded.Values("systolic_bp", from, to).Count * 2, lines.Length - 1);
        Assert.Contains($"{from.UtcDateTime:yyyy-MM-ddTHH:mm:ss}.000Z,systolic_bp,8480-6,{seeded.Values("systolic_bp", from, to)[0]},mm[Hg],{SeededServer.DeviceId}", lines);
        var hours = hourly.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("start,kind,loinc,unit,count,min,max,mean,std_dev,sum", hours[0]);
        Assert.Equal(5, hours.Length - 1);
        Assert.StartsWith($"{from.UtcDateTime:yyyy-MM-ddTHH:mm:ss}.000Z,spo2,59408-5,%,6,95,98,", hours[1], StringComparison.Ordinal);
    }

    [Fact]
    public async Task Daily_progress_gives_steps_against_the_goal_resting_heart_rate_sleep_and_weight()
    {
        var first = DateOnly.FromDateTime(seeded.Start.UtcDateTime);
        var last = first.AddDays(3);
        using var document = await GetJsonAsync($"/api/patients/{SeededServer.PatientId}/daily?from={first:yyyy-MM-dd}&to={last:yyyy-MM-dd}&timeZone=UTC&stepsGoal=7000");

        Assert.Equal(7000, document.RootElement.GetProperty("stepsGoal").GetInt32());
        var days = document.RootElement.GetProperty("days").EnumerateArray().ToList();
        Assert.Equal(4, days.Count);
        foreach (var day in days)
        {
            var date = DateOnly.Parse(day.GetProperty("date").GetString()!, CultureInfo.InvariantCulture);
            var from = new DateTimeOffset(date.ToDateTime(TimeOnly.MinValue), TimeSpan.Zero);
            var steps = seeded.Values("steps", from, from.AddDays(1));
            var weights = seeded.Values("body_weight", from, from.AddDays(1));
            Assert.Equal(steps.Count == 0 ? null : (double?)steps.Sum(), Nullable(day, "steps"));
            Assert.Equal(steps.Count == 0 ? "Null" : steps.Sum() >= 7000 ? "True" : "False", day.GetProperty("stepsGoalMet").ValueKind.ToString());
            Assert.Equal(weights.Count == 0 ? null : (double?)weights[^1], Nullable(day, "weightKg"));
            Assert.Equal(seeded.Values("sleep_duration", from, from.AddDays(1)).Cast<double?>().SingleOrDefault(), Nullable(day, "sleepHours"));
            Assert.Equal(seeded.Values("resting_heart_rate", from, from.AddDays(1)).Cast<double?>().SingleOrDefault(), Nullable(day, "restingHeartRate"));
        }

        Assert.True(days.Count(d => d.GetProperty("steps").ValueKind != JsonValueKind.Null) >= 3);
    }

    [Theory]
    [InlineData("trends?kind=mood", "kind")]
    [InlineData("trends?kind=heart_rate&resolution=2m", "resolution")]
    [InlineData("trends?kind=heart_rate&resolution=1m&from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z", "from")]
    [InlineData("trends?kind=heart_rate&from=1970-01-01T00:00:00Z", "from")]
    [InlineData("daily?timeZone=Mars/Olympus", "timeZone")]
    [InlineData("daily?timeZone=America", "timeZone")]
    [InlineData("daily?timeZone=../../../etc/passwd", "timeZone")]
    [InlineData("daily?to=9999-12-31", "to")]
    [InlineData("daily?to=0001-01-02", "to")]
    [InlineData("trends?kind=heart_rate&to=0001-01-01T00:00:00Z", "from")]
    [InlineData("export.csv?to=0001-01-01T00:00:00Z", "from")]
    [InlineData("export.csv?resolution=5m", "resolution")]
    [InlineData("trends?kind=heart_rate&from=2026-11-24T10:00:00+02:00", "from")]
    [InlineData("trends?kind=heart_rate&resolution=raw&from=2026-01-01T00:00:00Z&to=2026-01-09T00:00:00Z", "from")]
    [InlineData("trends?kind=heart_rate&to=yesterday", "to")]
    [InlineData("daily?stepsGoal=abc", "stepsGoal")]
    [InlineData("daily?from=2026-11-24T00:00Z", "from")]
    [InlineData("alerts?limit=ten", "limit")]
    [InlineData("alerts?after=nope", "after")]
    [InlineData("alerts?after=someone-else~1", "after")]
    public async Task Bad_queries_get_a_problem_naming_the_parameter(string query, string parameter)
    {
        using var response = await Server.Http.GetAsync($"/api/patients/{SeededServer.PatientId}/{query}");
        using var problem = JsonDocument.Parse(await response.Content.ReadAsStringAsync());

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        Assert.True(problem.RootElement.GetProperty("errors").TryGetProperty(parameter, out _));
    }

    [Fact]
    public async Task A_daily_summary_from_a_day_ahead_without_to_says_that_to_is_today()
    {
        using var response = await Server.Http.GetAsync($"/api/patients/{SeededServer.PatientId}/daily?from=2099-01-01&timeZone=UTC");
        using var problem = JsonDocument.Parse(await response.Content.ReadAsStringAsync());

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var told = problem.RootElement.GetProperty("errors").GetProperty("from")[0].GetString();
        Assert.Contains($"which is today ({DateTime.UtcNow:yyyy-MM-dd} in UTC) when not given", told, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Auto_reads_a_range_older_than_a_resolution_is_kept_from_the_finest_one_still_kept_and_nothing_is_cached()
    {
        // Raw readings and minutes kept three days: a day-old hour is read raw, a four-day-old one from hourly windows
        // (its minutes are gone), in REST and in FHIR alike.
        await using var server = await TelemetryServer.StartNewAsync(new Dictionary<string, string>
        {
            ["Telemetry__Ingest__BackfillHorizon"] = "2.00:00:00",
            ["Telemetry__Retention__RawDays"] = "3",
            ["Telemetry__Retention__MinuteRollupDays"] = "3",
        });
        var now = DateTimeOffset.UtcNow;
        async Task<string?> ResolutionAsync(DateTimeOffset from)
        {
            using var document = JsonDocument.Parse(await server.Http.GetStringAsync($"/api/patients/p-kept/trends?kind=heart_rate&from={Iso(from)}&to={Iso(from.AddHours(1))}"));
            return document.RootElement.GetProperty("resolution").GetString();
        }

        Assert.Equal("raw", await ResolutionAsync(now.AddDays(-1)));
        Assert.Equal("1h", await ResolutionAsync(now.AddDays(-4)));
        using var search = JsonDocument.Parse(await server.Http.GetStringAsync(
            $"/fhir/Observation?patient=p-kept&code=8867-4&date=ge{Iso(now.AddDays(-4))}&date=lt{Iso(now.AddDays(-4).AddHours(1))}"));
        Assert.Contains("resolution=1h", search.RootElement.GetProperty("link")[0].GetProperty("url").GetString(), StringComparison.Ordinal);

        // Patients' data is answered not to be kept in any cache.
        using var trend = await server.Http.GetAsync($"/api/patients/p-kept/trends?kind=heart_rate");
        using var fhir = await server.Http.GetAsync("/fhir/Observation?patient=p-kept");
        Assert.Equal(("no-store", "no-store"), (trend.Headers.CacheControl?.ToString(), fhir.Headers.CacheControl?.ToString()));
    }

    [Fact]
    public async Task The_openapi_document_describes_the_rest_surface()
    {
        using var document = await GetJsonAsync("/openapi/v1.json");

        var paths = document.RootElement.GetProperty("paths");
        foreach (var path in new[] { "/api/patients/{patientId}/trends", "/api/patients/{patientId}/daily", "/api/patients/{patientId}/export.csv", "/api/devices", "/api/alerts/{alertId}/ack" })
        {
            Assert.True(paths.TryGetProperty(path, out _), $"{path} missing from the OpenAPI document");
        }

        Assert.DoesNotContain(paths.EnumerateObject(), p => p.Name.StartsWith("/fhir", StringComparison.Ordinal));

        // Bodies read by their handlers are described all the same, as what a client sends.
        var post = paths.GetProperty("/api/devices").GetProperty("post");
        Assert.True(post.TryGetProperty("requestBody", out var body), post.ToString());
        var provision = body.GetProperty("content").GetProperty("application/json").GetProperty("schema");
        var schema = provision.TryGetProperty("$ref", out var reference)
            ? document.RootElement.GetProperty("components").GetProperty("schemas").GetProperty(reference.GetString()![(reference.GetString()!.LastIndexOf('/') + 1)..])
            : provision;
        Assert.True(schema.TryGetProperty("properties", out var properties) && properties.TryGetProperty("deviceId", out _), schema.ToString());
    }

    private static double? Nullable(JsonElement day, string name) =>
        day.GetProperty(name).ValueKind == JsonValueKind.Null ? null : day.GetProperty(name).GetDouble();

    private static string Iso(DateTimeOffset time) => Uri.EscapeDataString(time.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture));

    private async Task<JsonDocument> GetJsonAsync(string url)
    {
        using var response = await Server.Http.GetAsync(url);
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"{url} answered {response.StatusCode}: {body}");
        return JsonDocument.Parse(body);
    }
}
