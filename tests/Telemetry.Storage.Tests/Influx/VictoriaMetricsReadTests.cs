using Telemetry.Core.Readings;
using Telemetry.Core.Rollups;
using Telemetry.Core.Storage;
using Telemetry.Core.Vitals;
using Telemetry.Storage.Influx;
using Telemetry.Testing;
using Xunit;
using static Telemetry.Storage.Tests.DuckDb.Batches;

namespace Telemetry.Storage.Tests.Influx;

/// <summary>VictoriaMetrics as the whole raw store: written through InfluxDB.Client, read back through its export API.</summary>
public sealed class VictoriaMetricsReadTests : IAsyncLifetime
{
    private VictoriaMetrics _server = null!;
    private InfluxStoreFile _file = null!;

    private InfluxRawSeriesStore Store => _file.Store;

    public async Task InitializeAsync()
    {
        _server = await VictoriaMetrics.StartNewAsync();
        _file = InfluxStoreFile.ForVictoriaMetrics(_server.Url);
    }

    public async Task DisposeAsync()
    {
        _file.Dispose();
        await _server.DisposeAsync();
    }

    [Fact]
    public async Task Settings_that_keep_every_reading_once_are_no_problem()
    {
        Assert.Empty(await _file.Backend.SettingsProblemsAsync(TimeSpan.FromDays(30), rollupsKept: null, CancellationToken.None) ?? ["could not be read"]);

        // 100y, the longest VictoriaMetrics keeps, stands for good.
        Assert.Empty(await _file.Backend.SettingsProblemsAsync(TimeSpan.FromDays(30), TimeSpan.MaxValue, CancellationToken.None) ?? ["could not be read"]);
    }

    [Fact]
    public async Task A_retention_shorter_than_the_backfill_horizon_and_no_deduplication_are_named()
    {
        // VictoriaMetrics' defaults: a month (31 days), and every sample kept; readings may be 45 days old.
        await using var defaults = await VictoriaMetrics.StartNewAsync(retentionPeriod: "1", dedupInterval: null);
        using var file = InfluxStoreFile.ForVictoriaMetrics(defaults.Url);

        var problems = await file.Backend.SettingsProblemsAsync(TimeSpan.FromDays(45), rollupsKept: null, CancellationToken.None);

        Assert.NotNull(problems);
        Assert.Equal(2, problems.Count);
        Assert.Contains("keeps samples for 31 days (-retentionPeriod=1)", problems[0], StringComparison.Ordinal);
        Assert.Contains("does not deduplicate", problems[1], StringComparison.Ordinal);
        Assert.Single(await file.Backend.SettingsProblemsAsync(TimeSpan.FromDays(30), rollupsKept: null, CancellationToken.None) ?? []);

        // With the rollups in it, kept for good by default: a month ends the long trends.
        var withRollups = await file.Backend.SettingsProblemsAsync(TimeSpan.FromDays(30), TimeSpan.MaxValue, CancellationToken.None) ?? [];
        Assert.Equal(2, withRollups.Count);
        Assert.Contains("less than the rollups in it are to be kept (Telemetry:Retention:DayRollupDays: for good)", withRollups[0], StringComparison.Ordinal);
    }

    [Fact]
    public async Task Deduplication_coarser_than_a_millisecond_is_named_as_it_drops_readings()
    {
        await using var coarse = await VictoriaMetrics.StartNewAsync(dedupInterval: "1m");
        using var file = InfluxStoreFile.ForVictoriaMetrics(coarse.Url);

        var problem = Assert.Single(await file.Backend.SettingsProblemsAsync(TimeSpan.FromDays(30), rollupsKept: null, CancellationToken.None) ?? []);
        Assert.Contains("one sample per series in each 1m", problem, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("1", 31 * 86_400.0)]
    [InlineData("90d", 90 * 86_400.0)]
    [InlineData("2w", 14 * 86_400.0)]
    [InlineData("1y", 365 * 86_400.0)]
    [InlineData("1.5h", 5_400.0)]
    [InlineData("1ms", 0.001)]
    [InlineData("0s", 0.0)]
    [InlineData("1m0s", 60.0)]
    [InlineData("1h30m0s", 5_400.0)]
    public void Duration_flags_are_read_with_their_unit_a_bare_number_in_months(string flag, double seconds)
    {
        Assert.Equal(TimeSpan.FromSeconds(seconds), VictoriaMetricsSeriesReader.ParseFlagDuration(flag, TimeSpan.FromDays(31)));
    }

    [Fact]
    public async Task Aggregates_rebuild_windows_and_report_the_highest_commit()
    {
        var (first, _) = await _file.CommitAsync(Of("watch-1", "patient-1", 1, Heart(0, 60), Heart(30_000, 70), Oxygen(10_000, 97)));
        var (second, _) = await _file.CommitAsync(Of("ring-2", "patient-1", 1, Heart(45_000, 80), Heart(61_000, 90)), Of("watch-9", "patient-9", 1, Heart(0, 50)));
        await _server.FlushAsync();

        var aggregate = await Store.AggregateAsync("patient-1", T0, T0 + 86_400_000, Resolution.Minute);

        Assert.Equal(second, aggregate.HighestCommitId);
        Assert.True(second > first);
        Assert.Equal(
            [
                new KindWindow(VitalKind.HeartRate, new RollupWindow(T0, 3, 210, 60, 80, 3600 + 4900 + 6400, 80, T0 + 45_000)),
                new KindWindow(VitalKind.HeartRate, new RollupWindow(T0 + 60_000, 1, 90, 90, 90, 8100, 90, T0 + 61_000)),
                new KindWindow(VitalKind.OxygenSaturation, new RollupWindow(T0, 1, 97, 97, 97, 9409, 97, T0 + 10_000)),
            ],
            aggregate.Windows.OrderBy(window => window.Kind).ThenBy(window => window.Window.StartMs));
    }

    [Fact]
    public async Task An_aggregate_asked_for_as_a_rebuild_asks_right_after_a_commit_has_it_without_waiting_for_the_server_to_show_it()
    {
        // What a grain rebuilding right after another server's last commits (one killed, say) reads: the server is asked
        // to show what it has answered, instead of a second or more later.
        var (commitId, _) = await _file.CommitAsync(Of("watch-1", "patient-1", 1, Heart(0, 60), Heart(30_000, 70)));

        await Store.ShowAnsweredWritesAsync();
        var aggregate = await Store.AggregateAsync("patient-1", T0, T0 + 60_000, Resolution.Minute);

        Assert.Equal(commitId, aggregate.HighestCommitId);
        Assert.Equal(2, Assert.Single(aggregate.Windows).Window.Count);
    }

    [Fact]
    public async Task Flushes_asked_for_while_one_runs_share_the_next_which_begins_after_they_asked()
    {
        var begun = new List<int>();
        var release = new TaskCompletionSource();
        var flush = new CoalescedFlush(async _ =>
        {
            lock (begun)
            {
                begun.Add(begun.Count);
            }

            await release.Task;
        });

        var first = flush.FlushAsync();
        while (begun.Count == 0)
        {
            await Task.Delay(5);
        }

        var during = Enumerable.Range(0, 10).Select(_ => flush.FlushAsync()).ToList();
        Assert.False(first.IsCompleted);
        release.SetResult();
        await first;
        await Task.WhenAll(during);

        Assert.Equal([0, 1], begun);
    }

    [Fact]
    public async Task Raw_reads_come_in_order_with_their_limits_and_ranges()
    {
        await _file.CommitAsync(
            Of("watch-1", "patient-1", 1, Heart(0, 60), Heart(2_000, 62), Oxygen(1_000, 97), Oxygen(3_000, 96)),
            Of("ring-2", "patient-1", 1, Heart(1_000, 61)));
        await _server.FlushAsync();

        Assert.Equal(
            [new StoredReading("watch-1", VitalKind.HeartRate, T0, 60), new StoredReading("ring-2", VitalKind.HeartRate, T0 + 1_000, 61)],
            await Store.ReadAsync("patient-1", VitalKind.HeartRate, T0, T0 + 60_000, 2));
        Assert.Equal(
            [new StoredReading("ring-2", VitalKind.HeartRate, T0 + 1_000, 61)],
            await Store.ReadAsync("patient-1", VitalKind.HeartRate, T0 + 1_000, T0 + 2_000, 10));
        Assert.Equal(
            [new StoredReading("watch-1", VitalKind.HeartRate, T0 + 2_000, 62), new StoredReading("watch-1", VitalKind.OxygenSaturation, T0 + 3_000, 96)],
            (await Store.ReadLatestAsync("patient-1", [VitalKind.HeartRate, VitalKind.OxygenSaturation], T0, T0 + 60_000, 1)).OrderBy(reading => reading.Kind));

        var streamed = new List<StoredReading>();
        await foreach (var reading in Store.StreamAsync("patient-1", [VitalKind.HeartRate, VitalKind.OxygenSaturation], T0 - 86_400_000, T0 + 86_400_000))
        {
            streamed.Add(reading);
        }

        Assert.Equal([T0, T0 + 1_000, T0 + 1_000, T0 + 2_000, T0 + 3_000], streamed.Select(reading => reading.TimestampMs));
    }

    [Fact]
    public async Task The_latest_of_a_vital_not_sent_in_months_are_found_walking_back_newest_first()
    {
        const long Day = 86_400_000;
        var old = -100 * Day;
        await _file.CommitAsync(
            Of("watch-1", "patient-1", 1, Heart(old, 60), Heart(old + 2_000, 62), Heart(old + 4_000, 64), Oxygen(0, 97)),
            Of("ring-2", "patient-1", 1, Heart(old + 1_000, 61), Heart(old + 3_000, 63)));
        await _server.FlushAsync();

        var latest = await Store.ReadLatestAsync("patient-1", [VitalKind.HeartRate, VitalKind.OxygenSaturation], 0, T0 + 60_000, 3);

        Assert.Equal(
            [
                new StoredReading("watch-1", VitalKind.HeartRate, T0 + old + 4_000, 64),
                new StoredReading("ring-2", VitalKind.HeartRate, T0 + old + 3_000, 63),
                new StoredReading("watch-1", VitalKind.HeartRate, T0 + old + 2_000, 62),
                new StoredReading("watch-1", VitalKind.OxygenSaturation, T0, 97),
            ],
            latest.OrderBy(reading => reading.Kind).ThenByDescending(reading => reading.TimestampMs));
    }

    [Fact]
    public async Task A_raw_read_over_a_long_range_walks_it_in_stretches_and_keeps_order_and_limit()
    {
        // Weeks of sparse readings, the first two either side of the first stretch's end (an hour in).
        const long Hour = 3_600_000;
        const long Day = 86_400_000;
        var from = T0 - (20 * Day);
        long[] offsets = [0, Hour - 1, Hour, 5 * Day, 19 * Day];
        await _file.CommitAsync(Of("watch-1", "patient-1", 1, [.. offsets.Select((offset, i) => new VitalReading(VitalKind.HeartRate, from + offset, 60 + i))]));
        await _file.CommitAsync(Of("ring-2", "patient-1", 1, new VitalReading(VitalKind.HeartRate, from + Hour, 90)));
        await _server.FlushAsync();

        var firstFour = await Store.ReadAsync("patient-1", VitalKind.HeartRate, from, T0 + Day, 4);
        Assert.Equal(
            [("watch-1", from), ("watch-1", from + Hour - 1), ("ring-2", from + Hour), ("watch-1", from + Hour)],
            firstFour.Select(reading => (reading.DeviceId, reading.TimestampMs)));

        var all = await Store.ReadAsync("patient-1", VitalKind.HeartRate, from, T0 + Day, 100);
        Assert.Equal([60, 61, 90, 62, 63, 64], all.Select(reading => reading.Value));
        Assert.Equal([62.0, 63], (await Store.ReadAsync("patient-1", VitalKind.HeartRate, from + Hour, from + (19 * Day), 100)).Where(reading => reading.DeviceId == "watch-1").Select(reading => reading.Value));
    }

    [Fact]
    public async Task An_export_whose_body_stops_coming_fails_after_the_request_timeout_instead_of_waiting_for_good()
    {
        // A server that answers the headers and then sends nothing more (a half-open connection, say).
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        var stalled = Task.Run(async () =>
        {
            using var client = await listener.AcceptTcpClientAsync();
            var stream = client.GetStream();
            _ = await stream.ReadAtLeastAsync(new byte[8192], 1, throwOnEndOfStream: false);
            await stream.WriteAsync("HTTP/1.1 200 OK\r\nContent-Type: application/stream+json\r\nTransfer-Encoding: chunked\r\n\r\n"u8.ToArray());
            await Task.Delay(TimeSpan.FromSeconds(30));
        });
        var port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
        using var reader = new VictoriaMetricsSeriesReader(new VictoriaMetricsOptions { Url = $"http://127.0.0.1:{port}", RequestTimeout = TimeSpan.FromSeconds(1) }, TimeProvider.System);

        var read = reader.ReadAsync("patient-1", VitalKind.HeartRate, T0, T0 + 60_000, 10, CancellationToken.None);
        Assert.Same(read, await Task.WhenAny(read, Task.Delay(TimeSpan.FromSeconds(20))));
        var timedOut = await Assert.ThrowsAsync<TimeoutException>(() => read);
        Assert.Contains("VictoriaMetrics", timedOut.Message, StringComparison.Ordinal);
        listener.Stop();
    }

    [Theory]
    [InlineData(3_600_000, 0, 1_000, 28_800_000)]
    [InlineData(3_600_000, 3_600, 1_000, 1_000_000)]
    [InlineData(3_600_000, 10, 20_000, 28_800_000)]
    [InlineData(3_600_000, 1_000_000, 1, 1_000)]
    public void A_stretch_follows_the_density_of_the_last_within_bounds(long spanMs, int held, int wanted, long expected) =>
        Assert.Equal(expected, VictoriaMetricsSeriesReader.NextStretch(spanMs, held, wanted));

    [Fact]
    public async Task Quarantined_readings_are_read_back_newest_first()
    {
        await _file.CommitAsync(Of("watch-1", "patient-1", 1, Heart(0, 60)) with { Quarantined = new[] { Heart(1_000, 300), Heart(2_000, 400) } });
        await _server.FlushAsync();

        var quarantined = await Store.ReadQuarantineAsync("watch-1", 1);

        Assert.Equal(new VitalReading(VitalKind.HeartRate, T0 + 2_000, 400), Assert.Single(quarantined).Reading);
    }

    [Fact]
    public async Task A_quarantined_reading_sent_again_without_a_batch_number_is_kept_once_and_handed_on_once()
    {
        var implausible = Heart(1_000, 300);
        var batch = Of("watch-2", "patient-2", 0, Heart(0, 60)) with { Quarantined = new[] { implausible, implausible } };
        var (_, first) = await _file.CommitAsync(batch);

        // Sent again while the server may not show it yet, and after it does (by a server that has not seen the device).
        var (_, soon) = await _file.CommitAsync(batch);
        await _server.FlushAsync();
        using var restarted = InfluxStoreFile.ForVictoriaMetrics(_server.Url);
        var (_, later) = await restarted.CommitAsync(batch with { Quarantined = new[] { implausible, Heart(2_000, 400) } });
        await _server.FlushAsync();

        Assert.Equal([implausible], first[0].Quarantined.ToArray());
        Assert.True(soon[0].Quarantined.IsEmpty);
        Assert.Equal([Heart(2_000, 400)], later[0].Quarantined.ToArray());
        Assert.Equal([Heart(2_000, 400), implausible], (await Store.ReadQuarantineAsync("watch-2", 10)).Select(q => q.Reading));
    }

    [Fact]
    public async Task Rollups_written_beside_the_series_are_read_back_and_a_rewrite_replaces_a_window()
    {
        var rollups = new SeriesRollupStore(_file.Backend, TimeProvider.System);
        await rollups.WriteAsync(
        [
            new Rollup("patient-1", VitalKind.HeartRate, Resolution.Minute, new RollupWindow(T0, 2, 130, 60, 70, 8500, 70, T0 + 30_000)),
            new Rollup("patient-1", VitalKind.HeartRate, Resolution.Minute, new RollupWindow(T0 + 60_000, 1, 80, 80, 80, 6400, 80, T0 + 61_000)),
            new Rollup("patient-1", VitalKind.HeartRate, Resolution.Hour, new RollupWindow(T0, 3, 210, 60, 80, 14900, 80, T0 + 61_000)),
        ]);
        await rollups.WriteAsync([new Rollup("patient-1", VitalKind.HeartRate, Resolution.Minute, new RollupWindow(T0, 3, 195, 60, 70, 12725, 65, T0 + 50_000))]);
        await _server.FlushAsync();

        Assert.Equal(
            [new RollupWindow(T0, 3, 195, 60, 70, 12725, 65, T0 + 50_000), new RollupWindow(T0 + 60_000, 1, 80, 80, 80, 6400, 80, T0 + 61_000)],
            await rollups.QueryAsync("patient-1", VitalKind.HeartRate, Resolution.Minute, T0, T0 + 3_600_000));
        Assert.Single(await rollups.QueryAsync("patient-1", VitalKind.HeartRate, Resolution.Hour, T0, T0 + 3_600_000));
        Assert.Empty(await rollups.QueryAsync("patient-1", VitalKind.OxygenSaturation, Resolution.Minute, T0, T0 + 3_600_000));
    }

    private static VitalReading Heart(long offsetMs, double value) => new(VitalKind.HeartRate, T0 + offsetMs, value);

    private static VitalReading Oxygen(long offsetMs, double value) => new(VitalKind.OxygenSaturation, T0 + offsetMs, value);
}
