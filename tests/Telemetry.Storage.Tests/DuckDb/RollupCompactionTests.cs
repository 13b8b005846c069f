using DuckDB.NET.Data;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using Telemetry.Core.Rollups;
using Telemetry.Core.Vitals;
using Telemetry.Storage.DuckDb;

namespace Telemetry.Storage.Tests.DuckDb;

/// <summary>Closed buckets of windows are packed into blocks; reads, rewrites and retention see no difference.</summary>
public sealed class RollupCompactionTests : IAsyncLifetime
{
    private const long Hour = 3_600_000;
    private const long Day = 24 * Hour;

    // Midnight, so hour buckets (a day each) line up with the days written below.
    private static readonly long Midnight = new DateTimeOffset(2026, 11, 1, 0, 0, 0, TimeSpan.Zero).ToUnixTimeMilliseconds();

    private readonly TemporaryDirectory _directory = new();

    // Compaction runs when the tests ask for it: the clock they move by days would otherwise start it too.
    private readonly IOptions<DuckDbOptions> _options;
    private readonly FakeTimeProvider _time = new(DateTimeOffset.FromUnixTimeMilliseconds(Midnight));
    private DuckDbDatabase _database = null!;
    private DuckDbRollupStore _store = null!;

    public RollupCompactionTests() =>
        _options = Options.Create(new DuckDbOptions { Path = _directory.Options.Value.Path, CompactionInterval = TimeSpan.FromDays(7) });

    public async Task InitializeAsync() => await OpenAsync();

    public async Task DisposeAsync()
    {
        await CloseAsync();
        _directory.Dispose();
    }

    [Fact]
    public async Task Closed_buckets_are_packed_and_read_back_the_same()
    {
        // Three days and five hours of hourly windows for two series of one patient and one of another.
        var heart = Hours("patient-1", VitalKind.HeartRate, 77, 60);
        var oxygen = Hours("patient-1", VitalKind.OxygenSaturation, 77, 96);
        var other = Hours("patient-2", VitalKind.HeartRate, 77, 120);
        await _store.WriteAsync([.. heart, .. oxygen, .. other]);
        _time.SetUtcNow(DateTimeOffset.FromUnixTimeMilliseconds(Midnight + (3 * Day) + (5 * Hour) + 1_000));

        var moved = await _store.CompactAsync();

        // The three whole days moved; the five hours of the day still going stay rows.
        Assert.Equal(3 * 72, moved);
        Assert.Equal(3 * 5, Count("SELECT count(*) FROM rollups"));
        Assert.Equal(3 * 3, Count("SELECT count(*) FROM rollup_blocks"));
        Assert.Equal(Windows(heart), await QueryAsync("patient-1", VitalKind.HeartRate, Midnight, Midnight + (4 * Day)));
        Assert.Equal(Windows(oxygen), await QueryAsync("patient-1", VitalKind.OxygenSaturation, Midnight, Midnight + (4 * Day)));
        Assert.Equal(Windows(other), await QueryAsync("patient-2", VitalKind.HeartRate, Midnight, Midnight + (4 * Day)));

        // A range inside a block returns just its part, and a range over nothing returns nothing.
        Assert.Equal(Windows(heart)[30..40], await QueryAsync("patient-1", VitalKind.HeartRate, Midnight + (30 * Hour), Midnight + (40 * Hour)));
        Assert.Empty(await QueryAsync("patient-3", VitalKind.HeartRate, Midnight, Midnight + (4 * Day)));
        Assert.Empty(await _store.QueryAsync("patient-1", VitalKind.HeartRate, Resolution.Minute, Midnight, Midnight + (4 * Day)));
    }

    [Fact]
    public async Task A_window_written_again_after_compaction_wins_and_is_folded_into_its_block()
    {
        var heart = Hours("patient-1", VitalKind.HeartRate, 48, 60);
        await _store.WriteAsync(heart);
        _time.SetUtcNow(DateTimeOffset.FromUnixTimeMilliseconds(Midnight + (2 * Day) + Hour));
        await _store.CompactAsync();

        // A late reading makes hour 10 of the first day bigger, after its day was packed.
        var rewritten = heart[10].Window.Add(heart[10].Window.StartMs + 1_000, 150);
        await _store.WriteAsync([new Rollup("patient-1", VitalKind.HeartRate, Resolution.Hour, rewritten)]);
        var expected = Windows(heart);
        expected[10] = rewritten;

        Assert.Equal(expected, await QueryAsync("patient-1", VitalKind.HeartRate, Midnight, Midnight + (2 * Day)));

        Assert.Equal(1, await _store.CompactAsync());
        Assert.Equal(0, Count("SELECT count(*) FROM rollups"));
        Assert.Equal(2, Count("SELECT count(*) FROM rollup_blocks"));
        Assert.Equal(expected, await QueryAsync("patient-1", VitalKind.HeartRate, Midnight, Midnight + (2 * Day)));
    }

    [Fact]
    public async Task Windows_written_again_weeks_back_and_in_the_bucket_just_ended_fold_into_their_blocks_alone()
    {
        // Three weeks of hours for two patients, packed. (Ending a day after the clock's start: moving it a week on would
        // start the compaction timer, which would race the compactions asked for.)
        var from = Midnight - (20 * Day);
        var first = Hours("patient-1", VitalKind.HeartRate, 21 * 24, 60, from);
        var second = Hours("patient-2", VitalKind.HeartRate, 21 * 24, 80, from);
        await _store.WriteAsync([.. first, .. second]);
        _time.SetUtcNow(DateTimeOffset.FromUnixTimeMilliseconds(Midnight + Day + Hour));
        await _store.CompactAsync();

        // A backfill rewrites an hour of the first day, a late reading one of the last day; both of patient 1.
        var expected = Windows(first);
        foreach (var hour in new[] { 10, (20 * 24) + 5 })
        {
            expected[hour] = first[hour].Window.Add(first[hour].Window.StartMs + 1_000, 150);
            await _store.WriteAsync([new Rollup("patient-1", VitalKind.HeartRate, Resolution.Hour, expected[hour])]);
        }

        Assert.Equal(2, await _store.CompactAsync());
        Assert.Equal(0, Count("SELECT count(*) FROM rollups"));
        Assert.Equal(2 * 21, Count("SELECT count(*) FROM rollup_blocks"));
        Assert.Equal(expected, await QueryAsync("patient-1", VitalKind.HeartRate, from, Midnight + Day));
        Assert.Equal(Windows(second), await QueryAsync("patient-2", VitalKind.HeartRate, from, Midnight + Day));
    }

    [Fact]
    public async Task A_compaction_of_many_slices_lets_writes_queued_meanwhile_go_between_them()
    {
        // 1,000 series of four hours of minutes: 240,000 rows, three slices.
        var minutes = Enumerable.Range(0, 1_000).SelectMany(series => Enumerable.Range(0, 240).Select(minute =>
        {
            var startMs = Midnight + (minute * 60_000L);
            return new Rollup($"patient-{series}", VitalKind.HeartRate, Resolution.Minute, new RollupWindow(startMs, 1, 60, 60, 60, 3_600, 60, startMs));
        })).ToList();
        _time.SetUtcNow(DateTimeOffset.FromUnixTimeMilliseconds(Midnight + (4 * Hour) + 1_000));

        // Queued one after the other while the writer is busy with the first: the rows, the compaction, a late window
        // (of a series the compaction's second slice packs).
        var written = _store.WriteAsync(minutes);
        var compaction = _store.CompactAsync();
        var compacting = await _store.WriteCountingCompactionsAsync([new Rollup("patient-late", VitalKind.HeartRate, Resolution.Minute, new RollupWindow(Midnight, 1, 70, 70, 70, 4_900, 70, Midnight))]);
        await written;

        // The late write was made while the compaction still had slices to go; then it packed every row of the four hours.
        Assert.Equal(1, compacting);
        Assert.Equal(240_000 + 1, await compaction);
        Assert.Equal(0, Count("SELECT count(*) FROM rollups"));
        Assert.Equal(240, (await _store.QueryAsync("patient-999", VitalKind.HeartRate, Resolution.Minute, Midnight, Midnight + Day)).Count);
    }

    [Fact]
    public async Task Retention_deletes_whole_blocks_and_trims_the_one_across_the_cutoff()
    {
        var heart = Hours("patient-1", VitalKind.HeartRate, 72, 60);
        await _store.WriteAsync(heart);
        _time.SetUtcNow(DateTimeOffset.FromUnixTimeMilliseconds(Midnight + (2 * Day) + Hour));
        await _store.CompactAsync();

        // Two days are blocks, the third is rows; the cutoff falls 5 hours into the second day.
        var deleted = await _store.DeleteBeforeAsync(Resolution.Hour, Midnight + Day + (5 * Hour));

        Assert.Equal(29, deleted);
        Assert.Equal(Windows(heart)[29..], await QueryAsync("patient-1", VitalKind.HeartRate, Midnight, Midnight + (3 * Day)));
        Assert.Equal(0, await _store.DeleteBeforeAsync(Resolution.Hour, Midnight + Day + (5 * Hour)));

        // A block emptied entirely goes.
        Assert.Equal(43, await _store.DeleteBeforeAsync(Resolution.Hour, Midnight + (3 * Day)));
        Assert.Equal(0, Count("SELECT count(*) FROM rollup_blocks"));
        Assert.Empty(await QueryAsync("patient-1", VitalKind.HeartRate, Midnight, Midnight + (3 * Day)));
    }

    [Fact]
    public async Task Blocks_survive_reopening_the_file()
    {
        var heart = Hours("patient-1", VitalKind.HeartRate, 30, 60);
        await _store.WriteAsync(heart);
        _time.SetUtcNow(DateTimeOffset.FromUnixTimeMilliseconds(Midnight + (2 * Day)));
        await _store.CompactAsync();

        await CloseAsync();
        await OpenAsync();

        Assert.Equal(Windows(heart), await QueryAsync("patient-1", VitalKind.HeartRate, Midnight, Midnight + (2 * Day)));
    }

    [Fact]
    public async Task A_file_from_before_bucket_keys_gains_them_when_opened()
    {
        await CloseAsync();
        File.Delete(_directory.Options.Value.Path);
        var window = new RollupWindow(Midnight, 2, 150, 70, 80, 11_300, 80, Midnight + 50_000);
        using (var connection = new DuckDBConnection($"Data Source={_directory.Options.Value.Path}"))
        {
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = $"""
                CREATE TABLE rollups (
                    patient_id VARCHAR NOT NULL, kind UTINYINT NOT NULL, resolution INTEGER NOT NULL, start TIMESTAMP NOT NULL,
                    count BIGINT NOT NULL, sum DOUBLE NOT NULL, min DOUBLE NOT NULL, max DOUBLE NOT NULL, sum_sq DOUBLE NOT NULL,
                    last DOUBLE NOT NULL, last_ts TIMESTAMP NOT NULL, PRIMARY KEY (patient_id, kind, resolution, start));
                INSERT INTO rollups VALUES ('patient-1', {(byte)VitalKind.HeartRate}, {(int)Resolution.Minute}, make_timestamp({Midnight * 1_000}),
                    2, 150, 70, 80, 11300, 80, make_timestamp({(Midnight + 50_000) * 1_000}));
                """;
            command.ExecuteNonQuery();
        }

        await OpenAsync();

        Assert.Equal([window], await _store.QueryAsync("patient-1", VitalKind.HeartRate, Resolution.Minute, Midnight, Midnight + Hour));
        var replaced = window.Add(Midnight + 55_000, 90);
        await _store.WriteAsync([new Rollup("patient-1", VitalKind.HeartRate, Resolution.Minute, replaced)]);
        Assert.Equal([replaced], await _store.QueryAsync("patient-1", VitalKind.HeartRate, Resolution.Minute, Midnight, Midnight + Hour));
    }

    private static List<Rollup> Hours(string patientId, VitalKind kind, int hours, double baseline, long? fromMs = null) =>
        [.. Enumerable.Range(0, hours).Select(hour =>
        {
            var start = (fromMs ?? Midnight) + (hour * Hour);
            var window = RollupWindow.Of(start, start + 60_000, baseline + (hour % 7)).Add(start + 1_800_000, baseline + (hour % 5));
            return new Rollup(patientId, kind, Resolution.Hour, window);
        })];

    private static List<RollupWindow> Windows(IEnumerable<Rollup> rollups) => [.. rollups.Select(rollup => rollup.Window)];

    private async Task<List<RollupWindow>> QueryAsync(string patientId, VitalKind kind, long fromMs, long toMs) =>
        [.. await _store.QueryAsync(patientId, kind, Resolution.Hour, fromMs, toMs)];

    private long Count(string sql)
    {
        using var connection = _database.OpenConnection();
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return Convert.ToInt64(command.ExecuteScalar());
    }

    private async Task OpenAsync()
    {
        _database = new DuckDbDatabase(_options);
        _store = new DuckDbRollupStore(_database, _options, _time, NullLogger<DuckDbRollupStore>.Instance);
        await _store.StartAsync(CancellationToken.None);
    }

    private async Task CloseAsync()
    {
        await _store.StopAsync(CancellationToken.None);
        _store.Dispose();
        _database.Dispose();
    }
}
