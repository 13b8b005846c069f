using System.Globalization;
using System.IO.Compression;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;

namespace Telemetry.EndToEnd.Tests;

/// <summary>A phone back online uploads a day of readings over HTTP: stored once, in the right windows, with clear answers.</summary>
public sealed class BulkUploadTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private TelemetryServer Server => fixture.Server;

    [Fact]
    public async Task A_day_of_1_hz_senml_in_one_request_is_stored_and_a_resend_is_all_duplicates()
    {
        var token = await Server.ProvisionAsync("upload-day", "p-upload-day");
        var dayStart = Devices.RecentMinute(0).AddDays(-1).AddMinutes(-2);
        const int Seconds = 86_400;

        var first = await UploadAsync("upload-day", token, "application/senml+json", SenMlDay(dayStart, Seconds));
        var again = await UploadAsync("upload-day", token, "application/senml+json", SenMlDay(dayStart, Seconds));

        Assert.Equal(HttpStatusCode.OK, first.Status);
        Assert.Equal((Seconds, 0, 0), (first.Accepted, first.Duplicates, first.Rejected));
        Assert.Equal(HttpStatusCode.OK, again.Status);
        Assert.Equal((0, Seconds, 0), (again.Accepted, again.Duplicates, again.Rejected));
        var hours = await Server.TrendWhenAsync("p-upload-day", "heart_rate", dayStart.AddHours(-1), dayStart.AddDays(1).AddHours(1), "1h", t => t.TotalCount == Seconds);
        Assert.Equal(Seconds, hours.TotalCount);
        Assert.Equal(60, hours.Points.Min(p => p.Min));
        Assert.Equal(119, hours.Points.Max(p => p.Max));
    }

    [Fact]
    public async Task An_upload_changing_a_value_already_stored_counts_it_as_a_conflict()
    {
        var token = await Server.ProvisionAsync("upload-conflict", "p-upload-conflict");
        var start = Devices.RecentMinute(0).AddHours(-1);

        await UploadAsync("upload-conflict", token, "application/x-ndjson", Ndjson([Reading(start, 70), Reading(start.AddSeconds(5), 71)]));
        var changed = await UploadAsync("upload-conflict", token, "application/x-ndjson", Ndjson([Reading(start, 70), Reading(start.AddSeconds(5), 90), Reading(start.AddSeconds(10), 72)]));

        Assert.Equal(HttpStatusCode.OK, changed.Status);
        Assert.Equal((1, 1, 1), (changed.Accepted, changed.Duplicates, changed.Rejected));
        Assert.Equal(1, changed.Rejects["conflict"]);
    }

    [Fact]
    public async Task Shuffled_readings_give_the_same_trend_as_ordered_ones()
    {
        var orderedToken = await Server.ProvisionAsync("upload-ordered", "p-upload-ordered");
        var shuffledToken = await Server.ProvisionAsync("upload-shuffled", "p-upload-shuffled");
        var start = Devices.RecentMinute(0).AddHours(-3);
        var lines = Enumerable.Range(0, 3 * 3_600 / 5)
            .Select(i => Reading(start.AddSeconds(i * 5), 55 + ((i * 7) % 60)))
            .ToList();
        var shuffled = lines.OrderBy(_ => Random.Shared.Next()).ToList();

        // The shuffled device sends in three parts, so late readings reach windows its grain has already closed.
        var ordered = await UploadAsync("upload-ordered", orderedToken, "application/x-ndjson", Ndjson(lines));
        foreach (var part in shuffled.Chunk(shuffled.Count / 3 + 1))
        {
            Assert.Equal(HttpStatusCode.OK, (await UploadAsync("upload-shuffled", shuffledToken, "application/x-ndjson", Ndjson(part))).Status);
        }

        Assert.Equal(lines.Count, ordered.Accepted);
        foreach (var resolution in new[] { "1m", "1h", "1d" })
        {
            var expected = await Server.TrendWhenAsync("p-upload-ordered", "heart_rate", start.AddDays(-1), start.AddDays(1), resolution, t => t.TotalCount == lines.Count);
            var actual = await Server.TrendWhenAsync("p-upload-shuffled", "heart_rate", start.AddDays(-1), start.AddDays(1), resolution, t => t.Points.SequenceEqual(expected.Points));
            Assert.Equal(lines.Count, expected.TotalCount);
            Assert.Equal(expected.Points, actual.Points);
        }
    }

    [Fact]
    public async Task A_batch_mixing_good_and_bad_readings_stores_exactly_the_good_ones()
    {
        var token = await Server.ProvisionAsync("upload-mixed", "p-upload-mixed");
        var at = Devices.RecentMinute();
        var body = $$"""
            {"readings":[
              {"kind":"heart_rate","time":"{{Iso(at)}}","value":72},
              {"kind":"heart_rate","time":"{{Iso(at.AddSeconds(1))}}","value":900},
              {"kind":"mood","time":"{{Iso(at.AddSeconds(2))}}","value":3},
              {"kind":"heart_rate","time":"{{Iso(DateTimeOffset.UtcNow.AddHours(2))}}","value":70},
              {"kind":"body_temperature","time":"{{Iso(at.AddSeconds(3))}}","value":98.6,"unit":"[degF]"},
              {"kind":"body_weight","time":"{{Iso(at.AddSeconds(4))}}","value":70,"unit":"stone"}
            ]}
            """;

        var result = await UploadAsync("upload-mixed", token, "application/json", Encoding.UTF8.GetBytes(body));

        Assert.Equal(HttpStatusCode.OK, result.Status);
        Assert.Equal((2, 0, 4), (result.Accepted, result.Duplicates, result.Rejected));
        Assert.Equal(1, result.Rejects["implausible"]);
        Assert.Equal(1, result.Rejects["unknown_kind"]);
        Assert.Equal(1, result.Rejects["future_timestamp"]);
        Assert.Equal(1, result.Rejects["unknown_unit"]);
        Assert.Equal(72, Assert.Single((await Server.TrendAsync("p-upload-mixed", "heart_rate", at, at.AddMinutes(1), count: 1)).Points).Max);
        Assert.Equal(37, Assert.Single((await Server.TrendAsync("p-upload-mixed", "body_temperature", at, at.AddMinutes(1), count: 1)).Points).Max, precision: 6);
    }

    [Fact]
    public async Task A_senml_pack_with_a_must_understand_field_stores_none_of_its_records()
    {
        // RFC 8428: a pack holding a field the reader must understand and does not is not used, not even its first records.
        var token = await Server.ProvisionAsync("upload-must", "p-upload-must");
        var at = Devices.RecentMinute().ToUnixTimeSeconds();
        var body = $$"""[{"n":"heart_rate","u":"beat/min","v":70,"t":{{at}}},{"n":"heart_rate","u":"beat/min","v":71,"t":{{at + 1}}},{"n":"heart_rate","v":72,"t":{{at + 2}},"rate_":1}]""";

        var result = await UploadAsync("upload-must", token, "application/senml+json", Encoding.UTF8.GetBytes(body));

        Assert.Equal(HttpStatusCode.BadRequest, result.Status);
        Assert.Equal(0, result.Accepted);
        Assert.Empty(await Server.RawHeartRatesAsync("p-upload-must", DateTimeOffset.FromUnixTimeSeconds(at), DateTimeOffset.FromUnixTimeSeconds(at + 60)));
    }

    [Fact]
    public async Task Uploads_need_the_devices_own_token_and_a_known_format()
    {
        var token = await Server.ProvisionAsync("upload-owner", "p-upload-owner");
        var otherToken = await Server.ProvisionAsync("upload-other", "p-upload-other");
        var body = Ndjson([Reading(Devices.RecentMinute(), 70)]);

        Assert.Equal(HttpStatusCode.Unauthorized, (await UploadAsync("upload-owner", null, "application/x-ndjson", body)).Status);
        Assert.Equal(HttpStatusCode.Forbidden, (await UploadAsync("upload-owner", otherToken, "application/x-ndjson", body)).Status);
        Assert.Equal(HttpStatusCode.UnsupportedMediaType, (await UploadAsync("upload-owner", token, "text/csv", body)).Status);
        // A broken NDJSON line is refused alone; a JSON document broken half-way is refused from there on.
        var brokenLine = await UploadAsync("upload-owner", token, "application/x-ndjson", [.. body, .. "{\"kind\":"u8.ToArray()]);
        Assert.Equal(HttpStatusCode.OK, brokenLine.Status);
        Assert.Equal((1, 1), (brokenLine.Accepted, brokenLine.Rejects["malformed_record"]));
        var truncated = Encoding.UTF8.GetBytes($$"""{"readings":[{{Reading(Devices.RecentMinute().AddSeconds(1), 71)}},{"kind":""");
        var malformed = await UploadAsync("upload-owner", token, "application/json", truncated);
        Assert.Equal(HttpStatusCode.BadRequest, malformed.Status);
        Assert.Equal(1, malformed.Accepted);

        // A protobuf message that cannot be read is refused alone, and why is in the device's reject log.
        var brokenMessage = await UploadAsync("upload-owner", token, "application/x-protobuf; delimited=true", [3, 0x0A, 0xFF, 0xFF]);
        Assert.Equal((HttpStatusCode.OK, 1L), (brokenMessage.Status, brokenMessage.Rejects["malformed_record"]));
        using var ownRejects = new HttpRequestMessage(HttpMethod.Get, "/api/devices/upload-owner/rejects");
        ownRejects.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        using var rejects = await Server.Http.SendAsync(ownRejects);
        Assert.Contains("a protobuf message of the upload could not be read", await rejects.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_upload_is_read_by_its_first_byte_as_an_mqtt_payload_is_whatever_payload_type_it_is_sent_as()
    {
        var token = await Server.ProvisionAsync("upload-payload", "p-upload-payload");
        var start = Devices.RecentMinute(0).AddHours(-6);

        // The bytes a device publishes: SenML sent as JSON, the JSON batch sent as SenML, and no type at all.
        var senMl = await UploadAsync("upload-payload", token, "application/json", SenMlDay(start, 120));
        var batch = Encoding.UTF8.GetBytes("{\"readings\":[" + Reading(start.AddMinutes(3), 80) + "]}");
        var json = await UploadAsync("upload-payload", token, "application/senml+json", batch);
        var untyped = await UploadAsync("upload-payload", token, null, batch);

        // One protobuf VitalBatch (not length-delimited), larger than a commit's 5,000 readings, read a series at a time.
        var vitalBatch = new Telemetry.Protos.VitalBatch { Seq = 1, BaseTimeMs = start.AddHours(1).ToUnixTimeMilliseconds() };
        for (var part = 0; part < 3; part++)
        {
            var series = new Telemetry.Protos.VitalSeries { Kind = "heart_rate" };
            series.TimeDeltasMs.Add(Enumerable.Range(0, 4_000).Select(i => i == 0 ? part * 4_000_000L : 1_000L));
            series.Values.Add(Enumerable.Range(0, 4_000).Select(i => 60.0 + (i % 30)));
            vitalBatch.Series.Add(series);
        }

        var protobuf = await UploadAsync("upload-payload", token, "application/x-protobuf", Google.Protobuf.MessageExtensions.ToByteArray(vitalBatch));
        var resent = await UploadAsync("upload-payload", token, "application/octet-stream", Google.Protobuf.MessageExtensions.ToByteArray(vitalBatch));

        Assert.Equal((HttpStatusCode.OK, 120L), (senMl.Status, senMl.Accepted));
        Assert.Equal((HttpStatusCode.OK, 1L, 0L), (json.Status, json.Accepted, json.Duplicates));
        Assert.Equal((HttpStatusCode.OK, 0L, 1L), (untyped.Status, untyped.Accepted, untyped.Duplicates));
        Assert.Equal((HttpStatusCode.OK, 12_000L, 0L), (protobuf.Status, protobuf.Accepted, protobuf.Rejected));
        Assert.Equal((HttpStatusCode.OK, 0L, 12_000L), (resent.Status, resent.Accepted, resent.Duplicates));
        Assert.Equal(12_121, (await Server.RawHeartRatesAsync("p-upload-payload", start, start.AddHours(5))).Count);

        // Well formed with no reading in it: refused, as an empty MQTT payload is, and counted.
        var empty = await UploadAsync("upload-payload", token, "application/json", "{\"readings\":[]}"u8.ToArray());
        Assert.Equal((HttpStatusCode.BadRequest, 0L), (empty.Status, empty.Accepted));
        Assert.Matches(@"telemetry_payloads_rejected_total\{[^}]*protocol=""http""[^}]*reason=""empty""[^}]*\} [1-9]", await Server.Http.GetStringAsync("/metrics"));
    }

    [Fact]
    public async Task A_gzip_compressed_upload_is_stored_and_one_in_another_coding_is_refused_with_415()
    {
        var token = await Server.ProvisionAsync("upload-gzip", "p-upload-gzip");
        var start = Devices.RecentMinute(0).AddHours(-2);
        var body = Ndjson(Enumerable.Range(0, 600).Select(i => Reading(start.AddSeconds(i * 10), 60 + (i % 40))));

        var gzipped = await UploadAsync("upload-gzip", token, "application/x-ndjson", Gzip(body), "gzip");
        var brotli = await UploadAsync("upload-gzip", token, "application/x-ndjson", body, "br");
        var broken = await UploadAsync("upload-gzip", token, "application/x-ndjson", [.. Gzip(body)[..200], .. new byte[64]], "gzip");

        Assert.Equal(HttpStatusCode.OK, gzipped.Status);
        Assert.Equal((600, 0, 0), (gzipped.Accepted, gzipped.Duplicates, gzipped.Rejected));
        Assert.Equal(600, (await Server.RawHeartRatesAsync("p-upload-gzip", start, start.AddHours(2))).Count);
        Assert.Equal(HttpStatusCode.UnsupportedMediaType, brotli.Status);
        Assert.Equal(HttpStatusCode.BadRequest, broken.Status);
        Assert.Equal(0, broken.Accepted);
        var rejects = await Server.Http.GetStringAsync("/api/devices/upload-gzip/rejects");
        Assert.Contains("Content-Encoding 'br'", rejects, StringComparison.Ordinal);
        Assert.Contains("gzip body could not be read", rejects, StringComparison.Ordinal);
        var metrics = await Server.Http.GetStringAsync("/metrics");
        Assert.Matches(@"telemetry_payloads_rejected_total\{[^}]*protocol=""http""[^}]*reason=""unsupported_encoding""[^}]*\} [1-9]", metrics);
    }

    [Fact]
    public async Task An_upload_whose_token_is_revoked_part_way_stores_nothing_after_and_gets_401()
    {
        var token = await Server.ProvisionAsync("upload-revoked", "p-upload-revoked");
        var start = Devices.RecentMinute(0).AddHours(-5);
        var body = new System.IO.Pipelines.Pipe();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/devices/upload-revoked/readings") { Content = new StreamContent(body.Reader.AsStream()) };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/x-ndjson");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        using var client = new HttpClient { BaseAddress = Server.Http.BaseAddress, Timeout = TimeSpan.FromMinutes(2) };
        var sending = client.SendAsync(request);

        // The first part (6,000 readings) commits its first 5,000; then the token is revoked, and the rest follows.
        await body.Writer.WriteAsync(Ndjson(Enumerable.Range(0, 6_000).Select(i => Reading(start.AddSeconds(i), 70))));
        var stored = await Eventually.ReadAsync(() => Server.RawHeartRatesAsync("p-upload-revoked", start, start.AddHours(4)), rows => rows.Count >= 5_000);
        Assert.Equal(5_000, stored.Count);
        using (var revoked = await Server.Http.DeleteAsync("/api/devices/upload-revoked/token"))
        {
            Assert.Equal(HttpStatusCode.OK, revoked.StatusCode);
        }

        await body.Writer.WriteAsync(Ndjson(Enumerable.Range(6_000, 6_000).Select(i => Reading(start.AddSeconds(i), 70))));
        await body.Writer.CompleteAsync();
        using var response = await sending;
        using var problem = JsonDocument.Parse(await response.Content.ReadAsStringAsync());

        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal(5_000, problem.RootElement.GetProperty("accepted").GetInt64());
        Assert.Equal(5_000, (await Server.RawHeartRatesAsync("p-upload-revoked", start, start.AddHours(4))).Count);
    }

    private async Task<UploadAnswer> UploadAsync(string deviceId, string? token, string? contentType, byte[] body, string? contentEncoding = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, $"/api/devices/{deviceId}/readings")
        {
            Content = new ByteArrayContent(body),
        };
        request.Content.Headers.ContentType = contentType is null ? null : MediaTypeHeaderValue.Parse(contentType);
        if (contentEncoding is not null)
        {
            request.Content.Headers.ContentEncoding.Add(contentEncoding);
        }

        request.Headers.Authorization = token is null ? null : new AuthenticationHeaderValue("Bearer", token);
        using var client = new HttpClient { BaseAddress = Server.Http.BaseAddress, Timeout = TimeSpan.FromMinutes(2) };
        using var response = await client.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        if (text.Length == 0 || !text.TrimStart().StartsWith('{'))
        {
            return new UploadAnswer(response.StatusCode, 0, 0, 0, []);
        }

        var json = JsonDocument.Parse(text).RootElement;
        long Number(string name) => json.TryGetProperty(name, out var value) ? value.GetInt64() : 0;
        var rejects = json.TryGetProperty("rejects", out var byReason)
            ? byReason.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetInt64())
            : [];
        return new UploadAnswer(response.StatusCode, Number("accepted"), Number("duplicates"), Number("rejected"), rejects);
    }

    private static byte[] SenMlDay(DateTimeOffset start, int seconds)
    {
        var text = new StringBuilder(seconds * 40);
        text.Append(CultureInfo.InvariantCulture, $"[{{\"bn\":\"urn:dev:phone:\",\"bt\":{start.ToUnixTimeSeconds()},\"bu\":\"beat/min\"}}");
        for (var i = 0; i < seconds; i++)
        {
            text.Append(CultureInfo.InvariantCulture, $",{{\"n\":\"heart_rate\",\"t\":{i},\"v\":{60 + (i % 60)}}}");
        }

        return Encoding.UTF8.GetBytes(text.Append(']').ToString());
    }

    private static string Reading(DateTimeOffset time, double value) =>
        string.Create(CultureInfo.InvariantCulture, $$"""{"kind":"heart_rate","time":"{{Iso(time)}}","value":{{value}}}""");

    internal static byte[] Gzip(byte[] body)
    {
        using var compressed = new MemoryStream();
        using (var gzip = new GZipStream(compressed, CompressionLevel.Fastest))
        {
            gzip.Write(body);
        }

        return compressed.ToArray();
    }

    private static byte[] Ndjson(IEnumerable<string> lines) => Encoding.UTF8.GetBytes(string.Join('\n', lines) + "\n");

    private static string Iso(DateTimeOffset time) => time.ToString("O", CultureInfo.InvariantCulture);

    private sealed record UploadAnswer(HttpStatusCode Status, long Accepted, long Duplicates, long Rejected, Dictionary<string, long> Rejects);
}
