// Firely's model annotates nearly every element as nullable; the assertions here are what check presence.
#nullable disable warnings

using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using Hl7.Fhir.Model;
using Hl7.Fhir.Serialization;
using MQTTnet;
using Task = System.Threading.Tasks.Task;

namespace Telemetry.EndToEnd.Tests;

/// <summary>The EMR's view: every FHIR response parsed strictly with Firely's parser, codes, units, periods, paging and errors checked.</summary>
[Collection("seeded")]
public sealed class FhirTests(SeededServer seeded)
{
    private const string Loinc = "http://loinc.org";
    private const string Statistics = "http://terminology.hl7.org/CodeSystem/observation-statistics";
    private static readonly FhirJsonDeserializer Strict = new(new DeserializerSettings().UsingMode(DeserializationMode.Strict));

    private TelemetryServer Server => seeded.Server;

    private string Patient => SeededServer.PatientId;

    [Fact]
    public async Task The_capability_statement_says_what_is_served()
    {
        var (status, resource) = await GetAsync("/fhir/metadata", token: false);

        var capability = Assert.IsType<CapabilityStatement>(resource);
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(FHIRVersion.N4_0_1, capability.FhirVersion);
        var resources = Assert.Single(capability.Rest).Resource;
        Assert.Equal(["Observation", "AuditEvent"], resources.Select(r => r.Type));
        var observation = resources[0];
        Assert.Equal(["patient", "entity", "date", "_count", "_before"], resources[1].SearchParam.Select(p => p.Name));
        Assert.Equal("http://hl7.org/fhir/SearchParameter/AuditEvent-patient", resources[1].SearchParam[0].Definition);
        Assert.Equal([CapabilityStatement.TypeRestfulInteraction.SearchType], observation.Interaction.Select(i => i.Code));
        Assert.Equal(["patient", "subject", "code", "category", "date", "resolution", "_count", "_offset", "_sort"], observation.SearchParam.Select(p => p.Name));
        Assert.Equal(["http://hl7.org/fhir/OperationDefinition/Observation-lastn", "http://hl7.org/fhir/OperationDefinition/Observation-stats"], observation.Operation.Select(o => o.Definition));
        Assert.Contains("http://hl7.org/fhir/StructureDefinition/bp", observation.SupportedProfile);
        Assert.Null(observation.Profile);
        Assert.Equal([CapabilityStatement.TypeRestfulInteraction.SearchType, CapabilityStatement.TypeRestfulInteraction.Read], resources[1].Interaction.Select(i => i.Code));

        // Development tokens only: no authorization server for a SMART app to find, and the discovery says so.
        Assert.Null(capability.Rest[0].Security);
        using var smart = await Server.Http.GetAsync("/fhir/.well-known/smart-configuration");
        Assert.Equal(HttpStatusCode.NotFound, smart.StatusCode);
        Assert.Equal("application/problem+json", smart.Content.Headers.ContentType?.MediaType);
        Assert.Contains("Telemetry:Auth:Jwt:Authority", await smart.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task An_hourly_search_returns_one_vital_signs_observation_per_window_with_mean_min_max_and_count()
    {
        var from = seeded.Start.AddHours(5);
        var bundle = await SearchAsync($"patient=Patient/{Patient}&code={Loinc}|8867-4&category=vital-signs&date=ge{Iso(from)}&date=lt{Iso(from.AddHours(24))}&resolution=1h");

        Assert.Equal(Bundle.BundleType.Searchset, bundle.Type);
        Assert.Equal(24, bundle.Total);
        var observations = bundle.Entry.Select(e => Assert.IsType<Observation>(e.Resource)).ToList();
        Assert.Equal(24, observations.Count);
        for (var hour = 0; hour < 24; hour++)
        {
            var observation = observations[hour];
            var values = seeded.Values("heart_rate", from.AddHours(hour), from.AddHours(hour + 1));
            Assert.Equal(ObservationStatus.Final, observation.Status);
            Assert.Contains("http://hl7.org/fhir/StructureDefinition/heartrate", observation.Meta.Profile);
            Assert.Equal(("http://terminology.hl7.org/CodeSystem/observation-category", "vital-signs"), (observation.Category[0].Coding[0].System, observation.Category[0].Coding[0].Code));
            Assert.Equal((Loinc, "8867-4"), (observation.Code.Coding[0].System, observation.Code.Coding[0].Code));
            Assert.Equal($"Patient/{Patient}", observation.Subject.Reference);
            var period = Assert.IsType<Period>(observation.Effective);
            Assert.Equal(from.AddHours(hour), period.StartElement!.ToDateTimeOffset(TimeSpan.Zero));
            Assert.Equal(from.AddHours(hour + 1), period.EndElement!.ToDateTimeOffset(TimeSpan.Zero));
            var mean = Assert.IsType<Quantity>(observation.Value);
            Assert.Equal(("http://unitsofmeasure.org", "/min"), (mean.System, mean.Code));
            Assert.Equal(Math.Round((decimal)values.Average(), 4), mean.Value);
            Assert.Equal((decimal)values.Min(), Statistic(observation, "minimum"));
            Assert.Equal((decimal)values.Max(), Statistic(observation, "maximum"));
            Assert.Equal(values.Count, ((Integer)observation.Component.Single(c => c.Code.Coding[0].Code == "count").Value).Value);
            Assert.Equal("urn:uuid:" + observation.Id, bundle.Entry[hour].FullUrl);
        }
    }

    [Fact]
    public async Task An_all_history_search_reads_every_stored_day_rather_than_being_refused_as_too_costly()
    {
        // As an EMR pulls a patient's whole history: from 1900, open-ended.
        var all = await SearchAsync($"patient={Patient}&code=8867-4&date=ge1900-01-01");
        var days = await SearchAsync($"patient={Patient}&code=8867-4&date=ge{Iso(seeded.Start.AddDays(-1))}&date=lt{Iso(DateTimeOffset.UtcNow.AddDays(1))}&resolution=1d");

        Assert.NotEqual(0, days.Total);
        Assert.Equal(days.Total, all.Total);
    }

    [Fact]
    public async Task A_search_by_post_answers_as_the_same_search_by_get()
    {
        var query = $"patient={Patient}&code=8867-4&date=ge{Iso(seeded.Start)}&date=lt{Iso(seeded.Start.AddDays(2))}&resolution=1h&_count=7";
        var byGet = await SearchAsync(query);
        using var form = new FormUrlEncodedContent(query.Split('&').Select(pair => pair.Split('=', 2)).Select(pair => KeyValuePair.Create(pair[0], Uri.UnescapeDataString(pair[1]))));
        using var posted = await Server.Http.PostAsync("/fhir/Observation/_search", form);
        using var notAForm = await Server.Http.PostAsync("/fhir/Observation/_search", new StringContent(query, Encoding.UTF8, "text/plain"));
        using var tooLong = await Server.Http.PostAsync("/fhir/Observation/_search", new StringContent($"patient={Patient}&x={new string('a', 10_000)}", Encoding.UTF8, "application/x-www-form-urlencoded"));
        using var asXml = await Server.Http.PostAsync("/fhir/Observation/_search", new StringContent(query + "&_format=xml", Encoding.UTF8, "application/x-www-form-urlencoded"));

        Assert.True(posted.StatusCode == HttpStatusCode.OK, await posted.Content.ReadAsStringAsync());
        var byPost = Assert.IsType<Bundle>(Strict.DeserializeResource(await posted.Content.ReadAsStringAsync()));
        Assert.Equal(byGet.Total, byPost.Total);
        Assert.Equal(byGet.Entry.Select(e => e.Resource!.Id), byPost.Entry.Select(e => e.Resource!.Id));
        Assert.Equal(HttpStatusCode.UnsupportedMediaType, notAForm.StatusCode);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, tooLong.StatusCode);

        // A format asked for in the body is asked for as in the URL.
        Assert.Equal(HttpStatusCode.NotAcceptable, asXml.StatusCode);
        Assert.IsType<OperationOutcome>(Strict.DeserializeResource(await asXml.Content.ReadAsStringAsync()));
    }

    [Theory]
    [InlineData("application/fhir+json; fhirVersion=4.0", HttpStatusCode.OK)]
    [InlineData("application/fhir+json; fhirVersion=3.0", HttpStatusCode.NotAcceptable)]
    [InlineData("application/fhir+json; fhirVersion=5.0, application/json; q=0.5", HttpStatusCode.OK)]
    [InlineData("application/xml, application/json; q=0", HttpStatusCode.NotAcceptable)]
    [InlineData("text/html, application/xhtml+xml, application/xml; q=0.9, */*; q=0.8", HttpStatusCode.OK)]
    [InlineData("application/fhir+xml", HttpStatusCode.NotAcceptable)]
    [InlineData("text/json", HttpStatusCode.OK)]
    [InlineData("application/fhir+json; fhirVersion=4.0.0", HttpStatusCode.OK)]
    [InlineData("application/fhir+json", HttpStatusCode.OK, "?_format=")]
    [InlineData("application/fhir+json", HttpStatusCode.NotAcceptable, "?_format=application/fhir+json;fhirVersion=3.0")]
    [InlineData("application/xml", HttpStatusCode.OK, "?_format=application/fhir+json")]
    public async Task The_answer_is_r4_json_when_accept_allows_it_and_406_when_it_asks_for_another_format_or_version(string accept, HttpStatusCode expected, string query = "")
    {
        // A '+' in _format is sent as it is, so it reaches the server as a space, as a hand-written URL's does.
        using var request = new HttpRequestMessage(HttpMethod.Get, "/fhir/metadata" + query);
        request.Headers.TryAddWithoutValidation("Accept", accept);
        using var response = await Server.Http.SendAsync(request);

        Assert.Equal(expected, response.StatusCode);
        var resource = Strict.DeserializeResource(await response.Content.ReadAsStringAsync());
        Assert.IsType(expected == HttpStatusCode.OK ? typeof(CapabilityStatement) : typeof(OperationOutcome), resource);
    }

    [Fact]
    public async Task A_stats_body_must_be_fhir_json_of_a_size_a_parameters_resource_has()
    {
        var body = new Parameters();
        body.Add("subject", new FhirUri($"Patient/{Patient}"));
        body.Add("code", new FhirString("8867-4"));
        body.Add("duration", new FhirDecimal(1));
        body.Add("statistic", new Code("count"));
        using var asText = await Server.Http.PostAsync("/fhir/Observation/$stats", new StringContent(body.ToJson(), Encoding.UTF8, "text/plain"));
        using var asJson = await Server.Http.PostAsync("/fhir/Observation/$stats", new StringContent(body.ToJson(), Encoding.UTF8, "application/json"));
        var padded = body.ToJson().Insert(1, new string(' ', 100_000));
        using var tooLong = await Server.Http.PostAsync("/fhir/Observation/$stats", new StringContent(padded, Encoding.UTF8, "application/fhir+json"));

        // Sent in chunks, with no length to refuse it by: refused as it is read.
        using var chunked = new HttpRequestMessage(HttpMethod.Post, "/fhir/Observation/$stats") { Content = new StringContent(padded, Encoding.UTF8, "application/fhir+json") };
        chunked.Headers.TransferEncodingChunked = true;
        using var chunkedTooLong = await Server.Http.SendAsync(chunked);

        Assert.Equal(HttpStatusCode.UnsupportedMediaType, asText.StatusCode);
        Assert.IsType<OperationOutcome>(Strict.DeserializeResource(await asText.Content.ReadAsStringAsync()));
        Assert.True(asJson.StatusCode == HttpStatusCode.OK, await asJson.Content.ReadAsStringAsync());
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, tooLong.StatusCode);
        Assert.Equal(OperationOutcome.IssueType.TooLong, Assert.IsType<OperationOutcome>(Strict.DeserializeResource(await tooLong.Content.ReadAsStringAsync())).Issue[0].Code);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, chunkedTooLong.StatusCode);
        Assert.Equal(OperationOutcome.IssueType.TooLong, Assert.IsType<OperationOutcome>(Strict.DeserializeResource(await chunkedTooLong.Content.ReadAsStringAsync())).Issue[0].Code);
    }

    [Fact]
    public async Task A_window_not_yet_ended_is_preliminary_and_the_ended_ones_final()
    {
        // Daily windows over the seeded days: today's (seeded up to this hour) has not ended.
        var bundle = await SearchAsync($"patient={Patient}&code=8867-4&date=ge{Iso(seeded.Start.AddDays(-1))}&date=lt{Iso(seeded.Start.AddDays(5))}&resolution=1d");
        var now = DateTimeOffset.UtcNow;
        var observations = bundle.Entry.Select(e => Assert.IsType<Observation>(e.Resource)).ToList();

        Assert.NotEmpty(observations);
        Assert.All(observations, observation => Assert.Equal(
            ((Period)observation.Effective!).EndElement!.ToDateTimeOffset(TimeSpan.Zero) > now ? ObservationStatus.Preliminary : ObservationStatus.Final,
            observation.Status));
        if (seeded.Start.AddDays(3).Hour > 0 && seeded.Start.AddDays(3).UtcDateTime.Date == now.UtcDateTime.Date)
        {
            Assert.Equal(ObservationStatus.Preliminary, observations[^1].Status);
        }
    }

    [Fact]
    public async Task A_windows_version_changes_when_a_late_reading_changes_it_and_stays_while_it_does_not()
    {
        // A patient of its own: a late reading changes one of its ended hours.
        const string PatientId = "p-fhir-versions";
        var token = await Server.ProvisionAsync("fhir-versions-watch", PatientId);
        using var watch = await Devices.ConnectMqttAsync(Server, "fhir-versions-watch", token);
        var hour = Devices.RecentMinute(0).AddHours(-3);
        hour = new DateTimeOffset(hour.Year, hour.Month, hour.Day, hour.Hour, 0, 0, TimeSpan.Zero);
        Assert.Equal(MqttClientPublishReasonCode.Success, (await Devices.PublishAsync(watch, "devices/fhir-versions-watch/vitals", Devices.JsonHeartRates(1, hour.AddMinutes(10), 70, 72))).ReasonCode);
        var query = $"patient={PatientId}&code=8867-4&date=ge{Iso(hour)}&date=lt{Iso(hour.AddHours(1))}&resolution=1h";

        async Task<Observation> WindowAsync(int count)
        {
            for (var attempt = 0; ; attempt++)
            {
                var found = (await SearchAsync(query)).Entry.Select(e => Assert.IsType<Observation>(e.Resource)).SingleOrDefault();
                if (found is not null && ((Integer)found.Component.Single(c => c.Code.Coding[0].Code == "count").Value).Value == count)
                {
                    return found;
                }

                Assert.True(attempt < 200, $"the window never counted {count} readings");
                await Task.Delay(100);
            }
        }

        var before = await WindowAsync(2);
        Assert.Equal(before.Meta.VersionId, (await WindowAsync(2)).Meta.VersionId);
        Assert.Equal(MqttClientPublishReasonCode.Success, (await Devices.PublishAsync(watch, "devices/fhir-versions-watch/vitals", Devices.JsonHeartRates(2, hour.AddMinutes(40), 90))).ReasonCode);
        var after = await WindowAsync(3);

        Assert.Equal(before.Id, after.Id);
        Assert.False(string.IsNullOrEmpty(before.Meta.VersionId));
        Assert.NotEqual(before.Meta.VersionId, after.Meta.VersionId);
        var raw = (await SearchAsync(query.Replace("resolution=1h", "resolution=raw", StringComparison.Ordinal))).Entry.Select(e => Assert.IsType<Observation>(e.Resource)).ToList();
        Assert.Equal(3, raw.Count);
        Assert.All(raw, reading => Assert.False(string.IsNullOrEmpty(reading.Meta.VersionId)));
        Assert.Equal(raw.Select(reading => reading.Meta.VersionId), (await SearchAsync(query.Replace("resolution=1h", "resolution=raw", StringComparison.Ordinal))).Entry.Select(e => ((Observation)e.Resource).Meta.VersionId));
    }

    [Fact]
    public async Task Paging_walks_every_observation_once_in_date_order_either_way()
    {
        var query = $"patient={Patient}&code=8867-4,59408-5&date=ge{Iso(seeded.Start)}&date=lt{Iso(seeded.Start.AddDays(2))}&resolution=1h&_count=7";
        foreach (var descending in new[] { false, true })
        {
            var pages = 0;
            var seen = new List<Observation>();
            Bundle? bundle = await SearchAsync(query + (descending ? "&_sort=-date" : string.Empty));
            var total = bundle.Total;
            while (bundle is not null)
            {
                pages++;
                seen.AddRange(bundle.Entry.Select(e => (Observation)e.Resource!));
                var next = bundle.Link.FirstOrDefault(l => l.Relation == "next")?.Url;
                bundle = next is null ? null : await SearchAsync(new Uri(next).Query.TrimStart('?'));
            }

            Assert.Equal(2 * 48, total);
            Assert.Equal(total, seen.Count);
            Assert.Equal(seen.Count, seen.Select(o => o.Id).Distinct().Count());
            Assert.Equal((int)Math.Ceiling(total!.Value / 7.0), pages);
            var starts = seen.Select(o => ((Period)o.Effective!).StartElement!.ToDateTimeOffset(TimeSpan.Zero)).ToList();
            Assert.Equal(descending ? starts.OrderByDescending(s => s) : starts.OrderBy(s => s), starts);
        }
    }

    [Fact]
    public async Task Links_fix_the_range_and_resolution_a_search_was_read_with_and_an_end_ahead_reads_up_to_now()
    {
        // Left to its defaults (the last 30 days, a resolution chosen by the range), a search's links name what it read,
        // so the next page is of the same list however the clock moves; a _count over the most served is cut to it.
        var bundle = await SearchAsync($"patient={Patient}&code=8867-4&_count=5000");
        var self = LinkParameters(bundle.Link.Single(l => l.Relation == "self").Url);
        Assert.Equal(["1000"], self["_count"]);
        Assert.Equal("1h", Assert.Single(self["resolution"]));
        var dates = self["date"].Select(date => (Prefix: date[..2], Time: DateTimeOffset.Parse(date[2..], CultureInfo.InvariantCulture))).ToList();
        Assert.Equal(["ge", "lt"], dates.Select(date => date.Prefix));
        Assert.Equal(TimeSpan.FromDays(30), dates[1].Time - dates[0].Time);
        Assert.Equal(bundle.Total, (await SearchAsync(new Uri(bundle.Link.Single(l => l.Relation == "self").Url).Query.TrimStart('?'))).Total);

        // Only an end given, weeks ahead: the 30 days up to now, not the 30 before that end.
        var ahead = await SearchAsync($"patient={Patient}&code=8867-4&date=le{Iso(DateTimeOffset.UtcNow.AddDays(40))}&resolution=1h");
        Assert.Equal(bundle.Total, ahead.Total);
        Assert.True(ahead.Total > 0);

        // An open-ended search (an end in 2100) reads up to what can be stored, its windows chosen for that range.
        var openEnded = await SearchAsync($"patient={Patient}&code=8867-4&date=le2100-01-01");
        Assert.Equal(bundle.Total, openEnded.Total);
        var sinceSeeded = await SearchAsync($"patient={Patient}&code=8867-4&date=ge{Iso(seeded.Start)}&date=le2100-01-01&resolution=1h");
        Assert.True(sinceSeeded.Total > 0);

        // Its links end with the hour of the latest time a reading may be stamped now (10 minutes ahead, the default
        // MaxFutureSkew), so the hours the clock opens later do not join the pages that follow.
        var sinceSeededSelf = LinkOf(sinceSeeded, "self");
        var end = DateTimeOffset.Parse(LinkParameters(sinceSeededSelf)["date"].Single(date => date.StartsWith("lt", StringComparison.Ordinal))[2..], CultureInfo.InvariantCulture);
        Assert.InRange(end, DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddMinutes(71));
        Assert.Equal(0, end.Minute + end.Second);
        Assert.Equal(sinceSeeded.Total, (await SearchAsync(new Uri(sinceSeededSelf).Query.TrimStart('?'))).Total);

        static string LinkOf(Bundle bundle, string relation) => bundle.Link.Single(l => l.Relation == relation).Url;
    }

    private static Dictionary<string, List<string>> LinkParameters(string url) =>
        Microsoft.AspNetCore.WebUtilities.QueryHelpers.ParseQuery(new Uri(url).Query)
            .ToDictionary(p => p.Key, p => p.Value.Select(v => v!).ToList(), StringComparer.Ordinal);

    [Fact]
    public async Task Blood_pressure_is_the_panel_with_systolic_and_diastolic_components_and_spo2_carries_both_codes()
    {
        var from = seeded.Start.AddHours(10);
        var panel = (Observation)(await SearchAsync($"patient={Patient}&code=85354-9&date=ge{Iso(from)}&date=lt{Iso(from.AddHours(1))}&resolution=1h")).Entry.Single().Resource!;
        var systolicAlone = await SearchAsync($"patient={Patient}&code={Loinc}|8480-6&date=ge{Iso(from)}&date=lt{Iso(from.AddHours(1))}&resolution=1h");
        var spo2 = await SearchAsync($"patient={Patient}&code={Loinc}|2708-6&date=ge{Iso(from)}&date=lt{Iso(from.AddHours(1))}&resolution=1h");

        Assert.Equal("85354-9", panel.Code.Coding.Single().Code);
        Assert.Null(panel.Value);
        Assert.Contains("http://hl7.org/fhir/StructureDefinition/bp", panel.Meta.Profile);
        var systolic = panel.Component.Single(c => c.Code.Coding.Count == 1 && c.Code.Coding[0].Code == "8480-6");
        var diastolic = panel.Component.Single(c => c.Code.Coding.Count == 1 && c.Code.Coding[0].Code == "8462-4");
        Assert.Equal(("mm[Hg]", (decimal)seeded.Values("systolic_bp", from, from.AddHours(1)).Single()), (((Quantity)systolic.Value).Code, ((Quantity)systolic.Value).Value));
        Assert.Equal(("mm[Hg]", (decimal)seeded.Values("diastolic_bp", from, from.AddHours(1)).Single()), (((Quantity)diastolic.Value).Code, ((Quantity)diastolic.Value).Value));
        // The bp profile allows one component coded 8480-6 and one 8462-4, the parts' values: their statistics name the part in text.
        Assert.Single(panel.Component, c => c.Code.Coding.Any(x => x.Code == "8480-6"));
        Assert.Single(panel.Component, c => c.Code.Coding.Any(x => x.Code == "8462-4"));
        Assert.Contains(panel.Component, c => c.Code.Coding.Single() is { System: Statistics, Code: "maximum" } && c.Code.Text.StartsWith("Diastolic", StringComparison.Ordinal));
        Assert.Equal("8480-6", ((Observation)systolicAlone.Entry.Single().Resource!).Code.Coding[0].Code);

        // $stats of the panel keeps to the same profile: one component of each part, statistics named by part in text.
        var stats = Assert.IsType<Parameters>((await GetAsync($"/fhir/Observation/$stats?subject=Patient/{Patient}&code=85354-9&duration=72&statistic=count,maximum")).Resource);
        var panelStats = (Observation)stats.Parameter.Single().Resource!;
        Assert.Single(panelStats.Component, c => c.Code.Coding.Any(x => x.Code == "8480-6"));
        Assert.Single(panelStats.Component, c => c.Code.Coding.Any(x => x.Code == "8462-4"));
        Assert.Equal(4, panelStats.Component.Count(c => c.Code.Coding.Single().System == Statistics));
        Assert.Contains(panelStats.Component, c => c.Code.Coding.Single() is { System: Statistics, Code: "maximum" } && c.Code.Text.StartsWith("Systolic", StringComparison.Ordinal));
        var oximetry = (Observation)spo2.Entry.Single().Resource!;
        Assert.Equal(["59408-5", "2708-6"], oximetry.Code.Coding.Select(c => c.Code));
        Assert.Equal("%", ((Quantity)oximetry.Value).Code);
    }

    [Fact]
    public async Task A_window_of_steps_is_their_total_with_their_mean_as_a_statistic()
    {
        var from = new DateTimeOffset(seeded.Start.UtcDateTime.Date.AddDays(1), TimeSpan.Zero);
        var day = (Observation)(await SearchAsync($"patient={Patient}&code=55423-8&date=ge{Iso(from)}&date=lt{Iso(from.AddDays(1))}&resolution=1d")).Entry.Single().Resource!;
        var steps = seeded.Values("steps", from, from.AddDays(1));

        Assert.Equal(24, steps.Count);
        Assert.Equal((decimal)steps.Sum(), ((Quantity)day.Value).Value);
        Assert.Equal((decimal)steps.Average(), Statistic(day, "average"));

        // Steps are activity, not a vital sign: filed so, claiming no vital signs profile, found by their category only.
        Assert.Equal(("http://terminology.hl7.org/CodeSystem/observation-category", "activity"), (day.Category.Single().Coding.Single().System, day.Category.Single().Coding.Single().Code));
        Assert.Empty(day.Meta?.Profile ?? []);
        var range = $"patient={Patient}&code=55423-8&date=ge{Iso(from)}&date=lt{Iso(from.AddDays(1))}&resolution=1d";
        Assert.Equal(1, (await SearchAsync($"{range}&category=activity")).Total);
        Assert.Equal(0, (await SearchAsync($"{range}&category=vital-signs")).Total);
    }

    [Fact]
    public async Task A_short_range_returns_the_raw_readings_with_their_device()
    {
        var from = seeded.Start.AddHours(30);
        var bundle = await SearchAsync($"patient={Patient}&code=8867-4&date=ge{Iso(from)}&date=lt{Iso(from.AddMinutes(30))}");

        var observations = bundle.Entry.Select(e => (Observation)e.Resource!).ToList();
        Assert.Equal(seeded.Values("heart_rate", from, from.AddMinutes(30)).Select(v => (decimal)v), observations.Select(o => ((Quantity)o.Value).Value!.Value));
        Assert.All(observations, o =>
        {
            Assert.IsType<FhirDateTime>(o.Effective);
            Assert.Equal(SeededServer.DeviceId, o.Device.Identifier.Value);
            Assert.Empty(o.Component);
        });
    }

    [Fact]
    public async Task Lastn_returns_the_newest_readings_of_each_code_newest_first()
    {
        var bundle = await GetBundleAsync($"/fhir/Observation/$lastn?patient={Patient}&category=vital-signs&code=8867-4,85354-9,29463-7&max=2");

        var byCode = bundle.Entry.Select(e => (Observation)e.Resource!).GroupBy(o => o.Code.Coding[0].Code).ToDictionary(g => g.Key, g => g.ToList());
        Assert.Equal(["8867-4", "85354-9", "29463-7"], byCode.Keys);
        Assert.All(byCode.Values, list => Assert.Equal(2, list.Count));
        var newestHeartRates = seeded.Readings.Where(r => r.Kind == "heart_rate").OrderByDescending(r => r.Time).Take(2).ToList();
        Assert.Equal(newestHeartRates.Select(r => r.Time), byCode["8867-4"].Select(o => ((FhirDateTime)o.Effective!).ToDateTimeOffset(TimeSpan.Zero)));
        Assert.Equal(newestHeartRates.Select(r => (decimal)r.Value), byCode["8867-4"].Select(o => ((Quantity)o.Value).Value!.Value));
        Assert.Equal(2, byCode["85354-9"][0].Component.Count);
        Assert.Equal(bundle.Entry.Count, bundle.Total);
    }

    [Fact]
    public async Task Stats_over_a_period_are_exact_whether_asked_by_query_or_by_parameters()
    {
        var from = seeded.Start.AddHours(3).AddMinutes(17).AddSeconds(30);
        var to = seeded.Start.AddDays(2).AddHours(1).AddMinutes(2);
        var values = seeded.Values("heart_rate", from, to);
        var body = new Parameters();
        body.Add("subject", new FhirUri($"Patient/{Patient}"));
        body.Add("code", new FhirString("8867-4"));
        body.Add("system", new FhirUri(Loinc));
        body.Add("period", new Period(new FhirDateTime(from), new FhirDateTime(to)));
        foreach (var statistic in new[] { "average", "minimum", "maximum", "count", "sum", "std-dev" })
        {
            body.Add("statistic", new Code(statistic));
        }

        using var request = new HttpRequestMessage(HttpMethod.Post, "/fhir/Observation/$stats") { Content = new StringContent(body.ToJson(), Encoding.UTF8, "application/fhir+json") };
        using var response = await Server.Http.SendAsync(request);
        var result = Assert.IsType<Parameters>(Strict.DeserializeResource(await response.Content.ReadAsStringAsync()));
        var byQuery = Assert.IsType<Parameters>((await GetAsync($"/fhir/Observation/$stats?subject=Patient/{Patient}&code=8867-4&system={Loinc}&duration=1&statistic=count,average")).Resource);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var stats = (Observation)result.Parameter.Single(p => p.Name == "statistics").Resource!;
        Assert.Equal(values.Count, ((Integer)stats.Component.Single(c => c.Code.Coding[0].Code == "count").Value).Value);
        Assert.Equal(Math.Round((decimal)values.Average(), 4), Statistic(stats, "average"));
        Assert.Equal((decimal)values.Min(), Statistic(stats, "minimum"));
        Assert.Equal((decimal)values.Max(), Statistic(stats, "maximum"));
        Assert.Equal((decimal)values.Sum(), Statistic(stats, "sum"));
        var mean = values.Average();
        Assert.Equal(Math.Round((decimal)Math.Sqrt(values.Sum(v => (v - mean) * (v - mean)) / values.Count), 2), Math.Round(Statistic(stats, "std-dev"), 2));
        Assert.Equal(from, ((Period)stats.Effective!).StartElement!.ToDateTimeOffset(TimeSpan.Zero));
        var recent = (Observation)byQuery.Parameter.Single().Resource!;
        Assert.Equal(2, recent.Component.Count);
    }

    [Theory]
    [InlineData("/fhir/Observation?code=8867-4", HttpStatusCode.BadRequest, "invalid")]
    [InlineData("/fhir/Observation?patient=p-seeded&date=2026-13-40", HttpStatusCode.BadRequest, "invalid")]
    [InlineData("/fhir/Observation?patient=p-seeded&date=sa2026-01-01", HttpStatusCode.BadRequest, "invalid")]
    [InlineData("/fhir/Observation?patient=p-seeded&date=x", HttpStatusCode.BadRequest, "invalid")]
    [InlineData("/fhir/Observation/$lastn?patient=p-seeded&code=8867-4&date=x", HttpStatusCode.BadRequest, "invalid")]
    [InlineData("/fhir/Observation?patient=p-seeded&_sort=code", HttpStatusCode.BadRequest, "not-supported")]
    [InlineData("/fhir/Observation?patient=p-seeded&resolution=1m&date=ge2020-01-01", HttpStatusCode.BadRequest, "too-costly")]
    [InlineData("/fhir/Observation?patient=p-seeded&resolution=raw&date=ge2026-01-01&date=lt2026-01-09", HttpStatusCode.BadRequest, "too-costly")]
    [InlineData("/fhir/Observation?patient=p-seeded&_count=-5", HttpStatusCode.BadRequest, "invalid")]
    [InlineData("/fhir/Observation?patient=p-seeded&_count=1e3", HttpStatusCode.BadRequest, "invalid")]
    [InlineData("/fhir/Observation/$lastn?patient=p-seeded", HttpStatusCode.BadRequest, "invalid")]
    [InlineData("/fhir/Observation/$stats?subject=Patient/p-seeded&code=8867-4&statistic=median&duration=1", HttpStatusCode.BadRequest, "not-supported")]
    [InlineData("/fhir/Observation/$stats?subject=Patient/p-seeded&code=1234-5&statistic=count&duration=1", HttpStatusCode.BadRequest, "invalid")]
    [InlineData("/fhir/Patient/p-seeded", HttpStatusCode.NotFound, "not-supported")]
    [InlineData("/fhir/Observation?patient=p-seeded&_format=xml", HttpStatusCode.NotAcceptable, "not-supported")]
    [InlineData("/fhir/Observation?patient=p-seeded&code:not=8867-4", HttpStatusCode.BadRequest, "not-supported")]
    [InlineData("/fhir/Observation/$lastn?patient=p-seeded&category=vital-signs&date:missing=true", HttpStatusCode.BadRequest, "not-supported")]
    [InlineData("/fhir/Observation/$stats?subject=Patient/p-seeded&code:text=pulse&statistic=count&duration=1", HttpStatusCode.BadRequest, "not-supported")]
    [InlineData("/fhir/AuditEvent?date:missing=true", HttpStatusCode.BadRequest, "not-supported")]
    public async Task Errors_are_operation_outcomes_with_the_right_status(string url, HttpStatusCode expected, string issueCode)
    {
        var (status, resource) = await GetAsync(url);

        Assert.Equal(expected, status);
        var outcome = Assert.IsType<OperationOutcome>(resource);
        Assert.Equal(issueCode, Hl7.Fhir.Utility.EnumUtility.GetLiteral(outcome.Issue.Single().Code));
        Assert.False(string.IsNullOrWhiteSpace(outcome.Issue[0].Diagnostics));
    }

    [Fact]
    public async Task Without_a_token_a_search_is_refused_and_strict_handling_refuses_unknown_parameters()
    {
        var (anonymous, outcome) = await GetAsync($"/fhir/Observation?patient={Patient}", token: false);
        using var request = new HttpRequestMessage(HttpMethod.Get, $"/fhir/Observation?patient={Patient}&colour=blue");
        request.Headers.Add("Prefer", "handling=strict");
        using var strict = await Server.Http.SendAsync(request);
        var lenient = await SearchAsync($"patient={Patient}&colour=blue&date=ge{Iso(seeded.Start)}&date=lt{Iso(seeded.Start.AddHours(2))}&resolution=1h&code=8867-4");

        Assert.Equal(HttpStatusCode.Unauthorized, anonymous);
        Assert.IsType<OperationOutcome>(outcome);
        Assert.Equal(HttpStatusCode.BadRequest, strict.StatusCode);
        Assert.IsType<OperationOutcome>(Strict.DeserializeResource(await strict.Content.ReadAsStringAsync()));
        Assert.Equal(2, lenient.Total);
        Assert.DoesNotContain("colour", lenient.Link[0].Url, StringComparison.Ordinal);

        // A method FHIR does not serve here is refused as FHIR refuses, not as the REST API does.
        using var options = await Server.Http.SendAsync(new HttpRequestMessage(HttpMethod.Options, $"/fhir/Observation?patient={Patient}"));
        using var head = await Server.Http.SendAsync(new HttpRequestMessage(HttpMethod.Head, $"/fhir/Observation?patient={Patient}"));
        Assert.Equal((HttpStatusCode.MethodNotAllowed, HttpStatusCode.MethodNotAllowed), (options.StatusCode, head.StatusCode));
        Assert.Equal(["GET", "POST"], head.Content.Headers.Allow);
        Assert.Equal("application/fhir+json", head.Content.Headers.ContentType?.MediaType);

        // A method no route here takes is refused by routing, before any FHIR code: as an OperationOutcome all the same.
        using var trace = await Server.Http.SendAsync(new HttpRequestMessage(HttpMethod.Trace, $"/fhir/Observation?patient={Patient}"));
        Assert.False(trace.IsSuccessStatusCode);
        Assert.IsType<OperationOutcome>(Strict.DeserializeResource(await trace.Content.ReadAsStringAsync()));
        Assert.Equal("not-supported", Hl7.Fhir.Utility.EnumUtility.GetLiteral(
            Assert.IsType<OperationOutcome>(Strict.DeserializeResource(await options.Content.ReadAsStringAsync())).Issue.Single().Code));
    }

    [Fact]
    public async Task A_plus_sent_unencoded_in_a_zone_or_a_format_is_read_as_a_plus()
    {
        // A query string decodes '+' as a space: a hand-built client's "+01:00" and "fhir+json" arrive so.
        var zoned = seeded.Start.ToOffset(TimeSpan.FromHours(1)).ToString("yyyy-MM-ddTHH:mm:ss", CultureInfo.InvariantCulture) + "+01:00";
        var range = $"patient={Patient}&code=8867-4&date=lt{Iso(seeded.Start.AddHours(2))}&resolution=1h";
        var encoded = await SearchAsync($"{range}&date=ge{Iso(seeded.Start)}");
        var unencoded = await SearchAsync($"{range}&date=ge{zoned}&_format=application/fhir+json");
        var older = await SearchAsync($"{range}&date=ge{Iso(seeded.Start)}&_format=application/json+fhir");

        Assert.Equal(2, encoded.Total);
        Assert.Equal(encoded.Total, unencoded.Total);
        Assert.Equal(encoded.Total, older.Total);
    }

    [Fact]
    public async Task A_scope_narrowed_to_a_category_reads_that_category_only_and_the_REST_API_only_with_all_three()
    {
        const string Category = "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|";
        async Task<HttpClient> ClientAsync(string scope) =>
            Server.ClientWith(await Server.MintTokenAsync("--role", "patient", "--patient", Patient, "--scope", scope));
        using var vitalSigns = await ClientAsync($"{Category}vital-signs");
        using var laboratory = await ClientAsync($"{Category}laboratory");
        using var everyCategory = await ClientAsync($"{Category}vital-signs {Category}laboratory {Category}activity");
        using var survey = await ClientAsync($"{Category}survey");

        // A user/ scope narrowed beside an unnarrowed patient/ one: the user/ context reaches, with its category only.
        using var mixed = await ClientAsync($"{Category.Replace("patient/", "user/", StringComparison.Ordinal)}vital-signs patient/Observation.rs");
        var range = $"patient={Patient}&date=ge{Iso(seeded.Start)}&date=lt{Iso(seeded.Start.AddHours(2))}&resolution=1h";

        async Task<int?> TotalAsync(HttpClient client, string query)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, "/fhir/Observation?" + query);
            request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/fhir+json"));
            using var response = await client.SendAsync(request);
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"{query} answered {response.StatusCode}");
            return ((Bundle)Strict.DeserializeResource(await response.Content.ReadAsStringAsync())).Total;
        }

        Assert.Equal(2, await TotalAsync(vitalSigns, $"{range}&code=8867-4"));
        Assert.Equal(0, await TotalAsync(vitalSigns, $"{range}&code=55423-8"));
        Assert.Equal(0, await TotalAsync(laboratory, $"{range}&code=8867-4"));
        Assert.Equal(2, await TotalAsync(everyCategory, $"{range}&code=55423-8"));
        Assert.Equal(0, await TotalAsync(mixed, $"{range}&code=55423-8"));
        using var stats = await laboratory.GetAsync($"/fhir/Observation/$stats?subject=Patient/{Patient}&code=8867-4&statistic=count&duration=1");
        using var otherwise = await survey.GetAsync($"/fhir/Observation?{range}&code=8867-4");
        Assert.Equal(HttpStatusCode.Forbidden, stats.StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, otherwise.StatusCode);

        // The REST API has no categories: it serves a narrowed token only when its scopes name every category here.
        using var restNarrowed = await vitalSigns.GetAsync($"/api/patients/{Patient}/trends?kind=heart_rate");
        using var restEvery = await everyCategory.GetAsync($"/api/patients/{Patient}/trends?kind=heart_rate");
        using var restMixed = await mixed.GetAsync($"/api/patients/{Patient}/trends?kind=heart_rate");
        Assert.Equal(HttpStatusCode.Forbidden, restNarrowed.StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, restMixed.StatusCode);
        Assert.Equal(HttpStatusCode.OK, restEvery.StatusCode);
    }

    private static decimal Statistic(Observation observation, string code) =>
        ((Quantity)observation.Component.Single(c => c.Code.Coding[0].System == Statistics && c.Code.Coding[0].Code == code).Value).Value!.Value;

    [Fact]
    public async Task The_audit_log_reads_as_AuditEvents_newest_first_for_an_admin_only()
    {
        await SearchAsync($"patient=Patient/{Patient}&code=8867-4&_count=1");

        var bundle = await GetBundleAsync($"/fhir/AuditEvent?patient=Patient/{Patient}&_count=5");

        Assert.Equal(Bundle.BundleType.Searchset, bundle.Type);
        Assert.InRange(bundle.Entry.Count, 1, 5);
        var events = bundle.Entry.Select(e => Assert.IsType<AuditEvent>(e.Resource)).ToList();
        Assert.Equal(events.OrderByDescending(e => long.Parse(e.Id, CultureInfo.InvariantCulture)).Select(e => e.Id), events.Select(e => e.Id));
        Assert.All(events, audit =>
        {
            Assert.Equal("rest", audit.Type.Code);
            Assert.Equal("http://terminology.hl7.org/CodeSystem/audit-event-type", audit.Type.System);
            Assert.Equal($"Patient/{Patient}", Assert.Single(audit.Entity).What.Reference);
            Assert.Equal("admin", audit.Agent.Single().Who.Identifier.Value);
            Assert.NotNull(audit.Source.Observer);
        });
        var search = events.First(e => e.Entity[0].Description.StartsWith("GET /fhir/Observation?", StringComparison.Ordinal));

        // An entry's fullUrl reads it again; an id the log does not hold is not found.
        var (readStatus, read) = await GetAsync(bundle.Entry[0].FullUrl);
        Assert.Equal(HttpStatusCode.OK, readStatus);
        Assert.Equal(events[0].Id, Assert.IsType<AuditEvent>(read).Id);
        Assert.Equal(HttpStatusCode.NotFound, (await GetAsync("/fhir/AuditEvent/999999999")).Status);
        Assert.Equal(("http://hl7.org/fhir/restful-interaction", "search-type"), (search.Subtype[0].System, search.Subtype[0].Code));
        Assert.Equal(AuditEvent.AuditEventAction.E, search.Action);
        Assert.Equal(AuditEvent.AuditEventOutcome.N0, search.Outcome);

        // Page by page, older each time, by the next links: every record read once at least, none skipped. No total
        // (counting would read the whole log).
        for (var i = 0; i < 3; i++)
        {
            await SearchAsync($"patient=Patient/{Patient}&code=8867-4&_count=1");
        }

        var all = (await GetBundleAsync($"/fhir/AuditEvent?patient=Patient/{Patient}&_count=1000")).Entry.Select(e => e.Resource!.Id).ToList();
        var paged = new List<string>();
        Bundle? page = await GetBundleAsync($"/fhir/AuditEvent?patient=Patient/{Patient}&_count=2");
        Assert.Null(page.Total);
        while (page is not null && paged.Count < 10 * all.Count)
        {
            paged.AddRange(page.Entry.Select(e => e.Resource!.Id));
            var next = page.Link.FirstOrDefault(l => l.Relation == "next")?.Url;
            page = next is null ? null : await GetBundleAsync(new Uri(next).PathAndQuery);
        }

        Assert.Subset(paged.ToHashSet(), all.Skip(1).ToHashSet());
        Assert.Equal(paged.Count, paged.Distinct().Count());

        using var clinician = Server.ClientWith(await Server.MintTokenAsync("--role", "clinician", "--care-team", "fhir-audit-ward"));
        using var refused = await clinician.GetAsync($"/fhir/AuditEvent?patient=Patient/{Patient}");
        Assert.Equal(HttpStatusCode.Forbidden, refused.StatusCode);
        Assert.IsType<OperationOutcome>(Strict.DeserializeResource(await refused.Content.ReadAsStringAsync()));
    }

    private static string Iso(DateTimeOffset time) => Uri.EscapeDataString(time.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture));

    private Task<Bundle> SearchAsync(string query) => GetBundleAsync("/fhir/Observation?" + query);

    private async Task<Bundle> GetBundleAsync(string url)
    {
        var (status, resource) = await GetAsync(url);
        Assert.True(status == HttpStatusCode.OK, $"{url} answered {status}: {resource.ToJson()}");
        return Assert.IsType<Bundle>(resource);
    }

    /// <summary>GETs a FHIR URL and parses the body strictly: any element Firely does not know, or any invalid value, fails the test.</summary>
    [Fact]
    public async Task A_stats_body_over_the_size_allowed_is_refused_with_413()
    {
        // Past Kestrel's limit for a request body (30 MB), which the REST API below is held to ($stats takes 64 KiB).
        var padding = new string(' ', 31 * 1024 * 1024);
        using var content = new StringContent("{\"resourceType\":\"Parameters\"," + padding + "\"parameter\":[]}", Encoding.UTF8, "application/fhir+json");
        using var request = new HttpRequestMessage(HttpMethod.Post, "/fhir/Observation/$stats") { Content = content };

        // The client waits for the server's go-ahead before sending the body (as long as it takes a loaded machine to
        // answer), and so hears its refusal instead of a connection reset mid-body.
        request.Headers.ExpectContinue = true;
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Server.AdminToken);
        using var patient = new HttpClient(new SocketsHttpHandler { Expect100ContinueTimeout = TimeSpan.FromSeconds(60) }) { BaseAddress = Server.Http.BaseAddress };
        using var response = await patient.SendAsync(request);

        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        var outcome = Assert.IsType<OperationOutcome>(Strict.DeserializeResource(await response.Content.ReadAsStringAsync()));
        Assert.Equal(OperationOutcome.IssueType.TooLong, outcome.Issue[0].Code);

        // The REST API's answer to the same: a problem with 413, not a server error.
        using var rules = new HttpRequestMessage(HttpMethod.Put, $"/api/patients/{Patient}/alert-rules")
        {
            Content = new StringContent("{\"rules\":[]," + padding + "\"template\":null}", Encoding.UTF8, "application/json"),
        };
        rules.Headers.ExpectContinue = true;
        rules.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Server.AdminToken);
        using var refused = await patient.SendAsync(rules);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, refused.StatusCode);
        Assert.Equal("application/problem+json", refused.Content.Headers.ContentType?.MediaType);
    }

    private async Task<(HttpStatusCode Status, Resource Resource)> GetAsync(string url, bool token = true)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, url);
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/fhir+json"));
        if (!token)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", "not-the-token");
        }

        using var response = await Server.Http.SendAsync(request);
        Assert.Equal("application/fhir+json", response.Content.Headers.ContentType?.MediaType);
        return (response.StatusCode, Strict.DeserializeResource(await response.Content.ReadAsStringAsync()));
    }
}
