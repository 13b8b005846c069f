using Telemetry.Core.Readings;
using Telemetry.Core.Rollups;
using Telemetry.Core.Storage;
using Telemetry.Core.Vitals;
using Xunit;
using static Telemetry.Storage.Tests.DuckDb.Batches;

namespace Telemetry.Storage.Tests.Influx;

/// <summary>
/// The Flux the store sends and how it reads InfluxDB's answers: responses in InfluxDB 2's annotated CSV, as its
/// <c>/api/v2/query</c> answers these queries, served from loopback (no InfluxDB 2 server can run here).
/// </summary>
public sealed class FluxReadTests : IDisposable
{
    private readonly RecordingInfluxServer _server = new();
    private readonly InfluxStoreFile _file;

    public FluxReadTests() => _file = new InfluxStoreFile(_server.Url);

    private static string At(long ms) => DateTimeOffset.FromUnixTimeMilliseconds(ms).UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'");

    public void Dispose()
    {
        _file.Dispose();
        _server.Dispose();
    }

    [Fact]
    public async Task A_bucket_keeping_points_for_less_than_the_backfill_horizon_is_named()
    {
        _server.Then(200, """{"buckets":[{"id":"b1","name":"vitals","orgID":"o1","retentionRules":[{"type":"expire","everySeconds":604800}]}]}""");
        _server.Then(200, """{"buckets":[{"id":"b1","name":"vitals","orgID":"o1","retentionRules":[{"type":"expire","everySeconds":0}]}]}""");

        var problem = Assert.Single(await _file.Backend.SettingsProblemsAsync(TimeSpan.FromDays(30), rollupsKept: null, CancellationToken.None) ?? []);
        var forever = await _file.Backend.SettingsProblemsAsync(TimeSpan.FromDays(30), rollupsKept: null, CancellationToken.None);

        Assert.Contains("bucket vitals keeps points for 7 days", problem, StringComparison.Ordinal);
        Assert.Equal("/api/v2/buckets", _server.Requests.First().Path);
        Assert.Contains("name=vitals", _server.Requests.First().Query, StringComparison.Ordinal);
        Assert.NotNull(forever);
        Assert.Empty(forever);
    }

    [Fact]
    public async Task A_bucket_keeping_points_for_less_than_its_rollups_are_kept_is_named()
    {
        // 90 days, as RawDays: enough for the horizon, not for day windows kept for good or for a year.
        const string NinetyDays = """{"buckets":[{"id":"b1","name":"vitals","orgID":"o1","retentionRules":[{"type":"expire","everySeconds":7776000}]}]}""";
        _server.Then(200, NinetyDays);
        _server.Then(200, NinetyDays);
        _server.Then(200, NinetyDays);

        var forGood = Assert.Single(await _file.Backend.SettingsProblemsAsync(TimeSpan.FromDays(30), TimeSpan.MaxValue, CancellationToken.None) ?? []);
        var aYear = Assert.Single(await _file.Backend.SettingsProblemsAsync(TimeSpan.FromDays(30), TimeSpan.FromDays(365), CancellationToken.None) ?? []);
        var elsewhere = await _file.Backend.SettingsProblemsAsync(TimeSpan.FromDays(30), rollupsKept: null, CancellationToken.None);

        Assert.Contains("keeps points for 90 days, less than the rollups in it are to be kept (Telemetry:Retention:DayRollupDays: for good)", forGood, StringComparison.Ordinal);
        Assert.Contains("(Telemetry:Retention:DayRollupDays: 365 days)", aYear, StringComparison.Ordinal);
        Assert.Equal([], elsewhere);
    }

    [Fact]
    public async Task Retention_deletes_through_the_millisecond_before_its_cutoff_as_influxdb_deletes_both_ends_of_a_range()
    {
        await _file.Store.DeleteBeforeAsync(T0);

        var deletes = _server.Requests.Where(request => request.Path == "/api/v2/delete").ToList();
        Assert.NotEmpty(deletes);
        Assert.All(deletes, delete =>
        {
            using var json = System.Text.Json.JsonDocument.Parse(delete.Body);
            Assert.Equal(DateTimeOffset.FromUnixTimeMilliseconds(T0 - 1), json.RootElement.GetProperty("stop").GetDateTimeOffset());
        });
    }

    [Fact]
    public async Task Readings_to_look_up_far_apart_are_looked_up_in_short_spans_not_one_long_one()
    {
        // The device's latest reading is known; then it sends two older ones a month apart (a resend and a backfill).
        await _file.CommitAsync(Of("watch-1", "patient-1", 1, new VitalReading(VitalKind.HeartRate, T0, 70)));
        var before = _server.Requests.Count;
        var monthAgo = T0 - (30 * 86_400_000L);
        await _file.CommitAsync(Of("watch-1", "patient-1", 2, new VitalReading(VitalKind.HeartRate, monthAgo, 71), new VitalReading(VitalKind.HeartRate, T0 - 1_000, 72)));

        var lookups = _server.Requests.Skip(before)
            .Where(request => request.Path == "/api/v2/query" && RecordingInfluxServer.Flux(request).Contains("keep(columns:", StringComparison.Ordinal))
            .Select(request => RecordingInfluxServer.Flux(request)).ToList();
        Assert.Equal(2, lookups.Count);
        Assert.Contains(lookups, flux => flux.Contains($"range(start: {At(monthAgo)}, stop: {At(monthAgo + 1)})", StringComparison.Ordinal));
        Assert.Contains(lookups, flux => flux.Contains($"range(start: {At(T0 - 1_000)}, stop: {At(T0 - 999)})", StringComparison.Ordinal));

        // Of the vitals looked up only: a device's daily weights do not read its heart rate of every second between them.
        Assert.All(lookups, flux => Assert.Contains("contains(value: r.kind, set: [\"heart_rate\"])", flux, StringComparison.Ordinal));

        // Forty readings two hours apart: sixteen lookups at most, cut at the widest gaps.
        before = _server.Requests.Count;
        await _file.CommitAsync(Of("watch-1", "patient-1", 3, [.. Enumerable.Range(1, 40).Select(i => new VitalReading(VitalKind.HeartRate, T0 - (i * 7_200_000L), 73))]));
        Assert.Equal(16, _server.Requests.Skip(before).Count(request => request.Path == "/api/v2/query" && RecordingInfluxServer.Flux(request).Contains("keep(columns:", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task Aggregates_are_windows_per_vital_with_the_highest_commit()
    {
        var lastNs = (T0 + 59_000) * 1_000_000;
        _server.ThenCsv($"""
            #group,false,false,true,true,true,false,false,false,false,false,false,false
            #datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,string,long,double,double,double,double,double,long
            #default,windows,,,,,,,,,,,
            ,result,table,_start,_stop,kind,count,sum,min,max,squares,last,lastTime
            ,,0,{At(T0)},{At(T0 + 60_000)},heart_rate,3,210,68,72,14708,70,{lastNs}
            ,,1,{At(T0 + 60_000)},{At(T0 + 120_000)},heart_rate,1,75,75,75,5625,75,{(T0 + 61_000) * 1_000_000}
            ,,2,{At(T0)},{At(T0 + 60_000)},spo2,2,195,97,98,19013,98,{(T0 + 30_000) * 1_000_000}

            #group,false,false,false,false,false,false,false,false,false,false,false
            #datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,dateTime:RFC3339,long,string,string,string,string,string
            #default,commit,,,,,,,,,,
            ,result,table,_start,_stop,_time,_value,_field,_measurement,device,kind,patient
            ,,0,{At(T0)},{At(T0 + 86_400_000)},{At(T0 + 30_000)},1795500000000123,commit,vitals,watch-1,spo2,patient-1

            """);

        var aggregate = await _file.Store.AggregateAsync("patient-1", T0, T0 + 86_400_000, Resolution.Minute);

        Assert.Equal(1795500000000123, aggregate.HighestCommitId);
        Assert.Equal(
            [
                new KindWindow(VitalKind.HeartRate, new RollupWindow(T0, 3, 210, 68, 72, 14708, 70, T0 + 59_000)),
                new KindWindow(VitalKind.HeartRate, new RollupWindow(T0 + 60_000, 1, 75, 75, 75, 5625, 75, T0 + 61_000)),
                new KindWindow(VitalKind.OxygenSaturation, new RollupWindow(T0, 2, 195, 97, 98, 19013, 98, T0 + 30_000)),
            ],
            aggregate.Windows);

        var flux = RecordingInfluxServer.Flux(Assert.Single(_server.Reads));
        Assert.Contains("from(bucket: \"vitals\")", flux);
        Assert.Contains($"range(start: {At(T0)}, stop: {At(T0 + 86_400_000)})", flux);
        Assert.Contains("r._measurement == \"vitals\" and r.patient == \"patient-1\"", flux);
        Assert.Contains("window(every: 1m)", flux);
        Assert.Contains("yield(name: \"commit\")", flux);
    }

    [Fact]
    public async Task An_empty_answer_is_no_windows_and_commit_zero()
    {
        _server.ThenCsv("\n");

        var aggregate = await _file.Store.AggregateAsync("patient-1", T0, long.MaxValue, Resolution.Hour);

        Assert.Empty(aggregate.Windows);
        Assert.Equal(0, aggregate.HighestCommitId);
        var flux = RecordingInfluxServer.Flux(Assert.Single(_server.Reads));
        Assert.Contains("stop: 2200-01-01T00:00:00.000Z", flux);
        Assert.Contains("window(every: 1h)", flux);
    }

    [Fact]
    public async Task Raw_reads_give_device_vital_time_and_value_in_the_order_asked()
    {
        _server.ThenCsv(RawCsv((T0, "watch-1", 61), (T0 + 1_000, "ring-2", 62.5)));
        _server.ThenCsv(RawCsv((T0 + 1_000, "ring-2", 62.5)));

        var read = await _file.Store.ReadAsync("patient-1", VitalKind.HeartRate, T0, T0 + 60_000, 500);
        var latest = await _file.Store.ReadLatestAsync("patient-1", [VitalKind.HeartRate, VitalKind.OxygenSaturation], T0, T0 + 60_000, 1);

        Assert.Equal([new StoredReading("watch-1", VitalKind.HeartRate, T0, 61), new StoredReading("ring-2", VitalKind.HeartRate, T0 + 1_000, 62.5)], read);
        Assert.Equal([new StoredReading("ring-2", VitalKind.HeartRate, T0 + 1_000, 62.5)], latest);
        var queries = _server.Reads.Select(RecordingInfluxServer.Flux).ToArray();
        Assert.Contains("r.kind == \"heart_rate\"", queries[0]);
        Assert.Contains("limit(n: 500)", queries[0]);
        Assert.Contains("contains(value: r.kind, set: [\"heart_rate\", \"spo2\"])", queries[1]);
        Assert.Contains("sort(columns: [\"_time\"], desc: true)", queries[1]);
        Assert.Contains("limit(n: 1)", queries[1]);
    }

    [Fact]
    public async Task An_export_streams_every_row()
    {
        var rows = Enumerable.Range(0, 2_500).Select(i => (T0 + i, "watch-1", 60.0 + (i % 30))).ToArray();
        _server.ThenCsv(RawCsv(rows));

        var streamed = new List<StoredReading>();
        await foreach (var reading in _file.Store.StreamAsync("patient-1", [VitalKind.HeartRate], T0, T0 + 60_000))
        {
            streamed.Add(reading);
        }

        Assert.Equal(rows.Select(row => new StoredReading(row.Item2, VitalKind.HeartRate, row.Item1, row.Item3)), streamed);
    }

    [Fact]
    public async Task The_newest_readings_are_looked_for_a_day_back_then_further_until_found_never_sorting_the_whole_range()
    {
        // A heart rate in the last day; the oxygen saturation's newest is found only in the stretch before it.
        const long Day = 86_400_000;
        var to = T0 + Day;
        _server.ThenCsv(RawCsv((T0 + 5_000, "watch-1", 61)));
        _server.ThenCsv(RawCsv((T0 - (3 * Day), "watch-1", 97)).Replace(",heart_rate,", ",spo2,", StringComparison.Ordinal));

        var latest = await _file.Store.ReadLatestAsync("patient-1", [VitalKind.HeartRate, VitalKind.OxygenSaturation], 0, to, 1);

        var queries = _server.Reads.Select(RecordingInfluxServer.Flux).ToArray();
        Assert.Equal(2, queries.Length);
        Assert.Contains($"range(start: {At(T0)}, stop: {At(to)})", queries[0]);
        Assert.Contains("set: [\"heart_rate\", \"spo2\"]", queries[0]);
        Assert.Contains($"range(start: {At(T0 - (8 * Day))}, stop: {At(T0)})", queries[1]);
        Assert.Contains("set: [\"spo2\"]", queries[1]);
        Assert.Equal(2, latest.Count);
        Assert.Equal(new StoredReading("watch-1", VitalKind.HeartRate, T0 + 5_000, 61), latest[0]);

        // Nothing at all: the walk reaches the start of time in a dozen stretches or fewer, then stops.
        var before = _server.Reads.Count();
        Assert.Empty(await _file.Store.ReadLatestAsync("patient-1", [VitalKind.Steps], 0, to, 5));
        var walked = _server.Reads.Skip(before).Select(RecordingInfluxServer.Flux).ToArray();
        Assert.InRange(walked.Length, 2, 12);
        Assert.Contains("range(start: 1970-01-01T00:00:00.000Z", walked[^1]);
    }

    [Fact]
    public async Task An_export_is_sorted_a_day_at_a_time()
    {
        const long Day = 86_400_000;
        await foreach (var _ in _file.Store.StreamAsync("patient-1", [VitalKind.HeartRate], T0, T0 + (2 * Day) + 1_000))
        {
        }

        var queries = _server.Reads.Select(RecordingInfluxServer.Flux).ToArray();
        Assert.Equal(3, queries.Length);
        Assert.Contains($"range(start: {At(T0)}, stop: {At(T0 + Day)})", queries[0]);
        Assert.Contains($"range(start: {At(T0 + (2 * Day))}, stop: {At(T0 + (2 * Day) + 1_000)})", queries[2]);
    }

    [Fact]
    public async Task Quarantine_reads_the_value_and_reason_of_each_point()
    {
        _server.ThenCsv($"""
            #group,false,false,false,false,false,false,false,false,false,false,false
            #datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,dateTime:RFC3339,string,string,string,string,double,string
            #default,_result,,,,,,,,,,
            ,result,table,_start,_stop,_time,_measurement,device,kind,patient,value,reason
            ,,0,1970-01-01T00:00:00Z,{At(T0 + 86_400_000)},{At(T0 + 2_000)},quarantine,watch-1,heart_rate,patient-1,400,implausible

            """);

        var quarantined = Assert.Single(await _file.Store.ReadQuarantineAsync("watch-1", 1));

        Assert.Equal(new Core.Readings.VitalReading(VitalKind.HeartRate, T0 + 2_000, 400), quarantined.Reading);
        Assert.Equal("implausible", quarantined.Reason);

        // Found in the last day's stretch (from a day ahead of the clock): the device's whole history is not sorted.
        var flux = RecordingInfluxServer.Flux(Assert.Single(_server.Reads));
        Assert.Contains("r.device == \"watch-1\"", flux);
        var start = DateTimeOffset.Parse(System.Text.RegularExpressions.Regex.Match(flux, @"range\(start: ([^,]+),").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(start, DateTimeOffset.UtcNow.AddHours(-1), DateTimeOffset.UtcNow.AddHours(1));
    }

    [Fact]
    public async Task Rollups_are_read_one_row_per_window_with_their_fields()
    {
        _server.ThenCsv($"""
            #group,false,false,true,true,false,true,true,true,true,false,false,false,false,false,false,false
            #datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,dateTime:RFC3339,string,string,string,string,long,double,double,double,double,double,long
            #default,_result,,,,,,,,,,,,,,,
            ,result,table,_start,_stop,_time,_measurement,kind,patient,resolution,count,sum,min,max,squares,last,lastTime
            ,,0,{At(T0)},{At(T0 + 3_600_000)},{At(T0)},rollups,heart_rate,patient-1,1m,2,130,60,70,8500,70,{T0 + 30_000}
            ,,0,{At(T0)},{At(T0 + 3_600_000)},{At(T0 + 60_000)},rollups,heart_rate,patient-1,1m,1,80,80,80,6400,80,{T0 + 61_000}

            """);

        var rollups = new Telemetry.Storage.Influx.SeriesRollupStore(_file.Backend, TimeProvider.System);
        var windows = await rollups.QueryAsync("patient-1", VitalKind.HeartRate, Resolution.Minute, T0, T0 + 3_600_000);

        Assert.Equal([new RollupWindow(T0, 2, 130, 60, 70, 8500, 70, T0 + 30_000), new RollupWindow(T0 + 60_000, 1, 80, 80, 80, 6400, 80, T0 + 61_000)], windows);
        var flux = RecordingInfluxServer.Flux(Assert.Single(_server.Reads));
        Assert.Contains("r._measurement == \"rollups\" and r.patient == \"patient-1\"", flux);
        Assert.Contains("r.kind == \"heart_rate\" and r.resolution == \"1m\"", flux);
        Assert.Contains("pivot(rowKey: [\"_time\"], columnKey: [\"_field\"], valueColumn: \"_value\")", flux);
    }

    [Fact]
    public async Task Caller_values_are_quoted_so_they_cannot_change_the_query()
    {
        _server.ThenCsv("\n");

        await _file.Store.ReadAsync("p\" or true or r.patient == \"${x}", VitalKind.HeartRate, T0, T0 + 1, 1);

        Assert.Contains("r.patient == \"p\\\" or true or r.patient == \\\"\\${x}\"", RecordingInfluxServer.Flux(Assert.Single(_server.Reads)));
    }

    [Fact]
    public async Task A_quarantined_reading_a_failed_commit_kept_all_the_same_is_judged_when_its_batch_comes_again()
    {
        // The write is refused as far as the store can tell, but InfluxDB kept it (an answer lost on the way).
        var (file, batch, implausible) = await AfterAFailedCommitAsync();
        using var _ = file;

        // Sent again: both lookups find the first write's points.
        var writes = _server.Writes.Count();
        _server.ThenCsv(LookupCsv((T0, 61)));
        _server.ThenCsv(LookupCsv((T0 + 1_000, 400)));
        var (_, outcomes) = await file.CommitAsync(batch);
        Assert.Contains(_server.Requests, request => request.Path == "/api/v2/query" && RecordingInfluxServer.Flux(request).Contains("\"quarantine\"", StringComparison.Ordinal));

        // Not written again, but handed to the patient's grain, which never judged it.
        Assert.Equal([implausible], outcomes[0].Quarantined.ToArray());
        Assert.True(outcomes[0].Stored.IsEmpty);
        Assert.Equal(writes, _server.Writes.Count());
    }

    [Fact]
    public async Task A_quarantined_reading_a_failed_commit_did_not_keep_is_judged_once_when_kept_and_not_again()
    {
        var (file, batch, implausible) = await AfterAFailedCommitAsync();
        using var _ = file;

        // Sent again, found nowhere: kept and handed on. Sent once more: kept before, and judged then.
        var (_, kept) = await file.CommitAsync(batch);
        _server.ThenCsv(LookupCsv((T0, 61)));
        _server.ThenCsv(LookupCsv((T0 + 1_000, 400)));
        var (_, again) = await file.CommitAsync(batch);

        Assert.Equal([implausible], kept[0].Quarantined.ToArray());
        Assert.True(again[0].Quarantined.IsEmpty);
    }

    [Fact]
    public async Task An_older_quarantined_reading_kept_later_does_not_let_a_newer_one_sent_again_be_kept_twice()
    {
        Task<(long CommitId, BatchOutcome[] Outcomes)> CommitAsync(long atMs) =>
            _file.CommitAsync(Of("watch-1", "patient-1", 0) with { Quarantined = new[] { new VitalReading(VitalKind.HeartRate, T0 + atMs, 400) } });

        await CommitAsync(2_000);
        await CommitAsync(1_000);
        var (_, again) = await CommitAsync(2_000);

        Assert.True(again[0].Quarantined.IsEmpty);
        Assert.Equal(2, _server.Writes.Count());
    }

    /// <summary>A store that does not retry, whose first commit (a batch with an implausible reading) failed: its write was answered 500.</summary>
    private async Task<(InfluxStoreFile File, DeviceBatch Batch, VitalReading Implausible)> AfterAFailedCommitAsync()
    {
        var file = new InfluxStoreFile(_server.Url, options => options.RetryFor = TimeSpan.Zero);
        var implausible = new VitalReading(VitalKind.HeartRate, T0 + 1_000, 400);
        var batch = Of("watch-1", "patient-1", 0, new VitalReading(VitalKind.HeartRate, T0, 61)) with { Quarantined = new[] { implausible } };
        _server.FailingWith = 500;
        await Assert.ThrowsAnyAsync<Exception>(() => file.CommitAsync(batch));
        _server.FailingWith = null;
        return (file, batch, implausible);
    }

    /// <summary>A lookup's answer (of readings or of quarantine), as InfluxDB gives the columns the query keeps.</summary>
    private static string LookupCsv(params (long TimestampMs, double Value)[] rows)
    {
        var lines = new List<string>
        {
            "#group,false,false,false,false,true,true",
            "#datatype,string,long,dateTime:RFC3339,double,string,string",
            "#default,_result,,,,,",
            ",result,table,_time,_value,device,kind",
        };
        lines.AddRange(rows.Select(row => $",,0,{At(row.TimestampMs)},{row.Value.ToString(System.Globalization.CultureInfo.InvariantCulture)},watch-1,heart_rate"));
        return string.Join('\n', lines) + "\n\n";
    }

    private static string RawCsv(params (long TimestampMs, string Device, double Value)[] rows)
    {
        var lines = new List<string>
        {
            "#group,false,false,true,true,false,false,true,true,true,true,true",
            "#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,dateTime:RFC3339,double,string,string,string,string,string",
            "#default,_result,,,,,,,,,,",
            ",result,table,_start,_stop,_time,_value,_field,_measurement,device,kind,patient",
        };
        lines.AddRange(rows.Select(row => $",,0,{At(T0)},{At(T0 + 60_000)},{At(row.TimestampMs)},{row.Value.ToString(System.Globalization.CultureInfo.InvariantCulture)},value,vitals,{row.Device},heart_rate,patient-1"));
        return string.Join('\n', lines) + "\n\n";
    }
}
