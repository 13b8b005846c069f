using System.Buffers;
using System.Threading.Channels;
using DuckDB.NET.Data;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Telemetry.Core.Rollups;
using Telemetry.Core.Storage;
using Telemetry.Core.Vitals;

namespace Telemetry.Storage.DuckDb;

/// <summary>
/// Rollups in the embedded DuckDB file, laid out so that one patient's trend is a handful of index lookups however
/// many patients the file holds.
/// </summary>
/// <remarks>
/// <para>
/// Windows are first written as rows of <c>rollups</c>, as grains close them. Once a bucket of windows is over (an
/// hour of minutes, a day of hours, 32 days), compaction packs each series' bucket into one row of
/// <c>rollup_blocks</c> (<see cref="RollupBlock"/>) and deletes the rows. A 30-day trend of hours is then two index
/// lookups for its blocks (by group of buckets) and one for the rows not packed yet (by series; see
/// <see cref="RollupKeys"/>). Rows of one patient lie scattered through the file, and fetching hundreds of them, or
/// looking up dozens of keys, is what made trends slow.
/// </para>
/// <para>
/// One background writer owns every change: writes from many grains are queued and written together (staging table,
/// then one upsert), compaction and retention run between them, and each caller learns when its work is
/// stored. A window written again after its bucket was compacted goes to the rows, wins over the block on read, and is
/// folded into the block by the next compaction.
/// </para>
/// </remarks>
public sealed partial class DuckDbRollupStore(
    DuckDbDatabase database, IOptions<DuckDbOptions> options, TimeProvider timeProvider, ILogger<DuckDbRollupStore> logger)
    : BackgroundService, IRollupStore
{
    /// <summary>
    /// About how many rows one compaction transaction moves: each is a turn of the writer of its own, and the writes
    /// queued meanwhile go before the next, so they wait for one slice, not the whole compaction.
    /// </summary>
    private const int CompactionSliceRows = 100_000;

    /// <summary>
    /// The most groups of blocks a read looks up by key; a wider range is scanned. Enough for the widest read the API
    /// makes, a CSV export of 100,800 one-minute windows (70 days: 71 or 72 groups of a day).
    /// </summary>
    private const int MaxLookupGroups = 128;

    private const string RowColumns = "series_check, epoch_ms(start), count, sum, min, max, sum_sq, last, epoch_ms(last_ts)";

    private const string Tables = """
        CREATE TABLE IF NOT EXISTS rollups (
            patient_id VARCHAR NOT NULL,
            kind UTINYINT NOT NULL,
            resolution INTEGER NOT NULL,
            start TIMESTAMP NOT NULL,
            count BIGINT NOT NULL,
            sum DOUBLE NOT NULL,
            min DOUBLE NOT NULL,
            max DOUBLE NOT NULL,
            sum_sq DOUBLE NOT NULL,
            last DOUBLE NOT NULL,
            last_ts TIMESTAMP NOT NULL,
            series BIGINT NOT NULL,
            series_check BIGINT NOT NULL,
            PRIMARY KEY (patient_id, kind, resolution, start));
        CREATE TABLE IF NOT EXISTS rollup_blocks (
            patient_id VARCHAR NOT NULL,
            kind UTINYINT NOT NULL,
            resolution INTEGER NOT NULL,
            bucket_start TIMESTAMP NOT NULL,
            bucket_group BIGINT NOT NULL,
            series_check BIGINT NOT NULL,
            windows BLOB NOT NULL,
            PRIMARY KEY (patient_id, kind, resolution, bucket_start));
        CREATE INDEX IF NOT EXISTS rollups_series ON rollups (series);
        CREATE INDEX IF NOT EXISTS rollup_blocks_group ON rollup_blocks (bucket_group);
        """;

    // Upserts that set only columns no index holds. An upsert that sets an indexed column (INSERT OR REPLACE sets them
    // all) is carried out as a delete and an insert, and DuckDB's index can then fail the commit as a duplicate key,
    // fatally: the process aborts. Seen when a backfill rewrote the same day window call after call. A window's series
    // and bucket group follow from its key, so they never change.
    private const string UpsertRows = """
        INSERT INTO rollups SELECT * FROM rollup_staging
        ON CONFLICT (patient_id, kind, resolution, start) DO UPDATE SET count = excluded.count, sum = excluded.sum,
            min = excluded.min, max = excluded.max, sum_sq = excluded.sum_sq, last = excluded.last, last_ts = excluded.last_ts,
            series_check = excluded.series_check;
        """;

    private const string UpsertBlocks = """
        INSERT INTO rollup_blocks SELECT * FROM block_staging
        ON CONFLICT (patient_id, kind, resolution, bucket_start) DO UPDATE SET series_check = excluded.series_check, windows = excluded.windows;
        """;

    // The compaction under way (writer only): a slice of it runs after each turn of the writer, and while nothing waits.
    private CompactWork? _compaction;
    private readonly Queue<CompactWork> _compactionsWaiting = new();

    private readonly Channel<Work> _queue = Channel.CreateBounded<Work>(
        new BoundedChannelOptions(1_024) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });

    /// <summary>Writes <paramref name="rollups"/>; returns how many compactions were part way through as they were written.</summary>
    internal Task<long> WriteCountingCompactionsAsync(IReadOnlyCollection<Rollup> rollups) => RunAsync(new WriteWork(rollups), CancellationToken.None);

    public async Task WriteAsync(IReadOnlyCollection<Rollup> rollups, CancellationToken cancellationToken = default)
    {
        if (rollups.Count > 0)
        {
            await RunAsync(new WriteWork(rollups), cancellationToken);
        }
    }

    public Task<IReadOnlyList<RollupWindow>> QueryAsync(string patientId, VitalKind kind, Resolution resolution, long fromMs, long toMs, CancellationToken cancellationToken = default) =>
        Task.Run<IReadOnlyList<RollupWindow>>(
            () =>
            {
                using var connection = database.OpenConnection();
                return Query(connection, patientId, kind, resolution, fromMs, toMs);
            },
            cancellationToken);

    public Task<long> DeleteBeforeAsync(Resolution resolution, long beforeMs, CancellationToken cancellationToken = default) =>
        RunAsync(new DeleteWork(resolution, beforeMs), cancellationToken);

    /// <summary>Packs every bucket that is over into blocks now; returns how many windows moved. The writer also does this every <see cref="DuckDbOptions.CompactionInterval"/>.</summary>
    public Task<long> CompactAsync(CancellationToken cancellationToken = default) => RunAsync(new CompactWork(), cancellationToken);

    /// <summary>Appends one rollup as a row of <c>rollups</c> (or its staging copy).</summary>
    public static void AppendRow(DuckDBAppender appender, Rollup rollup)
    {
        var window = rollup.Window;
        appender.CreateRow()
            .AppendValue(rollup.PatientId)
            .AppendValue((byte)rollup.Kind)
            .AppendValue((int)rollup.Resolution)
            .AppendValue(Timestamps.ToDateTime(window.StartMs))
            .AppendValue(window.Count)
            .AppendValue(window.Sum)
            .AppendValue(window.Min)
            .AppendValue(window.Max)
            .AppendValue(window.SumOfSquares)
            .AppendValue(window.Last)
            .AppendValue(Timestamps.ToDateTime(window.LastMs))
            .AppendValue(RollupKeys.Series(rollup.PatientId, rollup.Kind, rollup.Resolution))
            .AppendValue(RollupKeys.Check(rollup.PatientId, rollup.Kind, rollup.Resolution))
            .EndRow();
    }

    /// <summary>
    /// Creates the rollup tables, and brings a file written before rollups were keyed by bucket up to date (its rows
    /// gain their keys, in one transaction). Called once when the database opens.
    /// </summary>
    public static void CreateSchema(DuckDBConnection connection)
    {
        using var transaction = connection.BeginTransaction();
        var unkeyed = Scalar(connection, "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'rollups'") > 0
            && Scalar(connection, "SELECT count(*) FROM duckdb_columns() WHERE table_name = 'rollups' AND column_name = 'series_check'") == 0;
        if (unkeyed)
        {
            Execute(connection, "ALTER TABLE rollups RENAME TO rollups_unkeyed");
        }

        Execute(connection, Tables);
        if (unkeyed)
        {
            using (var select = connection.CreateCommand())
            using (var appender = connection.CreateAppender("rollups"))
            {
                select.CommandText = "SELECT patient_id, kind, resolution, epoch_ms(start), count, sum, min, max, sum_sq, last, epoch_ms(last_ts) FROM rollups_unkeyed";
                using var reader = select.ExecuteReader();
                while (reader.Read())
                {
                    AppendRow(appender, new Rollup(reader.GetString(0), (VitalKind)reader.GetByte(1), (Resolution)reader.GetInt32(2), ReadWindow(reader, 3)));
                }
            }

            Execute(connection, "DROP TABLE rollups_unkeyed");
        }

        transaction.Commit();
    }

    public override Task StartAsync(CancellationToken cancellationToken)
    {
        // The first compaction is queued here, before anything can be written: ExecuteAsync starts on a thread-pool
        // thread, so a compaction queued there could run after writes made just after start, with a later clock.
        _queue.Writer.TryWrite(new CompactWork());
        return base.StartAsync(cancellationToken);
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        // Let queued work reach the file before the process ends.
        _queue.Writer.TryComplete();
        await base.StopAsync(cancellationToken);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        await Task.Yield();
        var compactions = ScheduleCompactionsAsync(stoppingToken);
        using var connection = database.OpenConnection();
        Execute(connection, """
            CREATE TEMP TABLE IF NOT EXISTS rollup_staging AS SELECT * FROM rollups LIMIT 0;
            CREATE TEMP TABLE IF NOT EXISTS block_staging AS SELECT * FROM rollup_blocks LIMIT 0;
            """);

        var writes = new List<WriteWork>();
        var latest = new Dictionary<(string, VitalKind, Resolution, long), Rollup>();
        while (true)
        {
            // With nothing waiting, the compaction under way goes on, a slice at a time.
            if (_compaction is not null && !_queue.Reader.TryPeek(out _))
            {
                CompactStep(connection);
                continue;
            }

            if (!await _queue.Reader.WaitToReadAsync(CancellationToken.None))
            {
                break;
            }

            // Consecutive writes go to the file together; other work runs alone, in the order it was asked for.
            writes.Clear();
            latest.Clear();
            while (latest.Count < options.Value.RollupBatchSize && _queue.Reader.TryPeek(out var next) && next is WriteWork)
            {
                _queue.Reader.TryRead(out _);
                var write = (WriteWork)next;
                writes.Add(write);
                foreach (var rollup in write.Rollups)
                {
                    latest[(rollup.PatientId, rollup.Kind, rollup.Resolution, rollup.Window.StartMs)] = rollup;
                }
            }

            if (writes.Count > 0)
            {
                Complete(writes, () => Write(connection, latest.Values) + (_compaction is null ? 0 : 1), latest.Count);
            }
            else if (_queue.Reader.TryRead(out var work))
            {
                if (work is CompactWork compaction)
                {
                    // One asked for while another is under way follows it, with the clock as it starts.
                    if (_compaction is null)
                    {
                        _compaction = compaction;
                    }
                    else
                    {
                        _compactionsWaiting.Enqueue(compaction);
                    }
                }
                else
                {
                    Complete([work], () => work.Run(this, connection), 0);
                }
            }

            // A slice after every turn, so that a compaction moves on however busy the writer is.
            if (_compaction is not null)
            {
                CompactStep(connection);
            }
        }

        // Stopping: the compaction under way finishes.
        while (_compaction is not null)
        {
            CompactStep(connection);
        }

        await compactions;
    }

    private void Complete(IReadOnlyList<Work> batch, Func<long> run, int rows)
    {
        try
        {
            var result = run();
            foreach (var work in batch)
            {
                work.Completion.TrySetResult(result);
            }
        }
        catch (Exception exception)
        {
            // Whatever went wrong, fail this batch (grains whose rollups were not written rebuild) and go on.
            LogWorkFailed(logger, exception, batch[0].Name, rows);
            foreach (var work in batch)
            {
                work.Completion.TrySetException(exception);
            }
        }
    }

    private async Task ScheduleCompactionsAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(options.Value.CompactionInterval, timeProvider);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                var work = new CompactWork();
                if (!_queue.Writer.TryWrite(work) && !await TryQueueAsync(work, stoppingToken))
                {
                    return;
                }

                await work.Completion.Task.ContinueWith(static _ => { }, TaskScheduler.Default);
            }
        }
        catch (OperationCanceledException)
        {
            // Stopping.
        }
    }

    private async Task<bool> TryQueueAsync(Work work, CancellationToken cancellationToken)
    {
        try
        {
            await _queue.Writer.WriteAsync(work, cancellationToken);
            return true;
        }
        catch (ChannelClosedException)
        {
            return false;
        }
    }

    private async Task<long> RunAsync(Work work, CancellationToken cancellationToken)
    {
        await _queue.Writer.WriteAsync(work, cancellationToken);
        return await work.Completion.Task.WaitAsync(cancellationToken);
    }

    private static List<RollupWindow> Query(DuckDBConnection connection, string patientId, VitalKind kind, Resolution resolution, long fromMs, long toMs)
    {
        var check = RollupKeys.Check(patientId, kind, resolution);
        var windows = new Dictionary<long, RollupWindow>();
        var decoded = new List<RollupWindow>();

        // One snapshot for both tables, so a compaction committing in between neither hides nor doubles a window.
        using var transaction = connection.BeginTransaction();
        using (var blocks = BlockRead(connection, patientId, kind, resolution, fromMs, toMs))
        using (var reader = blocks.ExecuteReader())
        {
            while (reader.Read())
            {
                if (reader.GetInt64(0) == check)
                {
                    DecodeBlock(reader, 1, fromMs, toMs, decoded);
                }
            }
        }

        foreach (var window in decoded)
        {
            windows[window.StartMs] = window;
        }

        // The rows not packed yet: the bucket still going, and windows written again after theirs was packed. They
        // are newer than any block, so they win.
        using (var rows = connection.CreateCommand())
        {
            rows.CommandText = $"SELECT {RowColumns} FROM rollups WHERE series = $1";
            rows.Parameters.Add(new DuckDBParameter(RollupKeys.Series(patientId, kind, resolution)));
            using var reader = rows.ExecuteReader();
            while (reader.Read())
            {
                var window = ReadWindow(reader, 1);
                if (reader.GetInt64(0) == check && window.StartMs >= fromMs && window.StartMs < toMs)
                {
                    windows[window.StartMs] = window;
                }
            }
        }

        transaction.Commit();
        var ordered = windows.Values.ToList();
        ordered.Sort(static (a, b) => a.StartMs.CompareTo(b.StartMs));
        return ordered;
    }

    /// <summary>
    /// The read that finds a series' blocks in a range: the groups it spans, named as the only condition, since with
    /// any other condition DuckDB scans the table instead of using the index. A range over more groups than a trend
    /// ever spans (years of minutes, say) is read by one scan instead.
    /// </summary>
    private static DuckDBCommand BlockRead(DuckDBConnection connection, string patientId, VitalKind kind, Resolution resolution, long fromMs, long toMs)
    {
        const string Select = "SELECT series_check, windows FROM rollup_blocks";
        var command = connection.CreateCommand();
        var groups = fromMs < toMs ? RollupKeys.GroupStarts(resolution, fromMs, toMs).Take(MaxLookupGroups + 1).ToList() : [];
        if (groups.Count <= MaxLookupGroups)
        {
            var keys = groups.Count == 0 ? [0L] : groups.Select(start => RollupKeys.Group(patientId, kind, resolution, start)).ToList();
            command.CommandText = $"{Select} WHERE bucket_group IN ({string.Join(", ", keys.Select((_, i) => $"${i + 1}"))})";
            foreach (var key in keys)
            {
                command.Parameters.Add(new DuckDBParameter(key));
            }

            return command;
        }

        command.CommandText = $"{Select} WHERE patient_id = $1 AND kind = $2 AND resolution = $3 AND bucket_start >= $4 AND bucket_start < $5";
        command.Parameters.Add(new DuckDBParameter(patientId));
        command.Parameters.Add(new DuckDBParameter((byte)kind));
        command.Parameters.Add(new DuckDBParameter((int)resolution));
        command.Parameters.Add(new DuckDBParameter(Timestamps.ToDateTime(RollupKeys.BucketStart(resolution, fromMs))));
        command.Parameters.Add(new DuckDBParameter(Timestamps.ToDateTime(toMs)));
        return command;
    }

    private static RollupWindow ReadWindow(DuckDBDataReader reader, int first) => new(
        reader.GetInt64(first), reader.GetInt64(first + 1), reader.GetDouble(first + 2), reader.GetDouble(first + 3),
        reader.GetDouble(first + 4), reader.GetDouble(first + 5), reader.GetDouble(first + 6), reader.GetInt64(first + 7));

    private static void DecodeBlock(DuckDBDataReader reader, int column, long fromMs, long toMs, ICollection<RollupWindow> windows)
    {
        using var stream = reader.GetStream(column);
        var length = checked((int)stream.Length);
        var buffer = ArrayPool<byte>.Shared.Rent(length);
        try
        {
            stream.ReadExactly(buffer, 0, length);
            RollupBlock.Decode(buffer.AsSpan(0, length), fromMs, toMs, windows);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private static long Write(DuckDBConnection connection, IEnumerable<Rollup> rollups)
    {
        using var transaction = connection.BeginTransaction();
        using (var appender = connection.CreateAppender("rollup_staging"))
        {
            foreach (var rollup in rollups)
            {
                AppendRow(appender, rollup);
            }
        }

        Execute(connection, $"{UpsertRows} DELETE FROM rollup_staging;");
        transaction.Commit();
        return 0;
    }

    /// <summary>
    /// One slice of the compaction under way (<see cref="_compaction"/>), sizing a resolution's slices as it comes to
    /// it; once every resolution is done, its callers learn how many windows moved.
    /// </summary>
    private void CompactStep(DuckDBConnection connection)
    {
        var work = _compaction!;
        try
        {
            work.StartedMs ??= timeProvider.GetUtcNow().ToUnixTimeMilliseconds();
            while (work.ResolutionIndex < ResolutionExtensions.All.Count)
            {
                var resolution = ResolutionExtensions.All[work.ResolutionIndex];
                if (work.Slices == 0)
                {
                    // Every bucket before the one holding the current window is over.
                    work.Cutoff = RollupKeys.BucketStart(resolution, resolution.WindowStart(work.StartedMs.Value));
                    var rows = Scalar(connection, "SELECT count(*) FROM rollups WHERE resolution = $1 AND start < $2", (int)resolution, Timestamps.ToDateTime(work.Cutoff));
                    if (rows == 0)
                    {
                        work.ResolutionIndex++;
                        continue;
                    }

                    (work.Slices, work.Slice) = ((int)Math.Clamp((rows + CompactionSliceRows - 1) / CompactionSliceRows, 1, 10_000), 0);
                }

                work.Moved += CompactSlice(connection, resolution, work.Cutoff, work.Slice, work.Slices);
                if (++work.Slice == work.Slices)
                {
                    (work.ResolutionIndex, work.Slices) = (work.ResolutionIndex + 1, 0);
                }

                if (work.ResolutionIndex < ResolutionExtensions.All.Count)
                {
                    return;
                }
            }

            if (work.Moved > 0)
            {
                LogCompacted(logger, work.Moved);
            }

            _compaction = _compactionsWaiting.TryDequeue(out var next) ? next : null;
            work.Completion.TrySetResult(work.Moved);
        }
        catch (Exception exception)
        {
            _compaction = _compactionsWaiting.TryDequeue(out var next) ? next : null;
            LogWorkFailed(logger, exception, work.Name, 0);
            work.Completion.TrySetException(exception);
        }
    }

    /// <summary>Packs the rows of one slice of the series (by series hash) that lie before <paramref name="cutoff"/>, in one transaction.</summary>
    private static long CompactSlice(DuckDBConnection connection, Resolution resolution, long cutoff, int slice, int slices)
    {
        var inSlice = $"resolution = $1 AND start < $2 AND ((series % {slices}) + {slices}) % {slices} = {slice}";
        using var transaction = connection.BeginTransaction();
        var groups = new Dictionary<(string PatientId, VitalKind Kind, long BucketStart), Dictionary<long, RollupWindow>>();
        long moved = 0;
        using (var select = connection.CreateCommand())
        {
            select.CommandText = $"SELECT patient_id, kind, {RowColumns} FROM rollups WHERE {inSlice}";
            select.Parameters.Add(new DuckDBParameter((int)resolution));
            select.Parameters.Add(new DuckDBParameter(Timestamps.ToDateTime(cutoff)));
            using var reader = select.ExecuteReader();
            while (reader.Read())
            {
                var window = ReadWindow(reader, 3);
                var bucketStart = RollupKeys.BucketStart(resolution, window.StartMs);
                var key = (reader.GetString(0), (VitalKind)reader.GetByte(1), bucketStart);
                if (!groups.TryGetValue(key, out var group))
                {
                    groups[key] = group = [];
                }

                group[window.StartMs] = window;
                moved++;
            }
        }

        if (moved == 0)
        {
            return 0;
        }

        // Blocks these windows join: a bucket compacted before, whose windows were written again since. The bucket just
        // ended is read by its range (every series' blocks there: few, as it is compacted now for the first time); one
        // from before it (a late reading's window, a backfill's) by its series' group key, so a backfill weeks back
        // reads its own series' blocks, not every patient's since.
        var merged = new Dictionary<(string, VitalKind, long), List<RollupWindow>>();
        void Merge(DuckDBCommand command)
        {
            using var reader = command.ExecuteReader();
            while (reader.Read())
            {
                var key = (reader.GetString(0), (VitalKind)reader.GetByte(1), reader.GetInt64(2));
                if (reader.GetInt32(3) == (int)resolution && groups.ContainsKey(key))
                {
                    var windows = new List<RollupWindow>();
                    DecodeBlock(reader, 4, long.MinValue, long.MaxValue, windows);
                    merged[key] = windows;
                }
            }
        }

        const string SelectBlocks = "SELECT patient_id, kind, epoch_ms(bucket_start), resolution, windows FROM rollup_blocks";
        var lastBucket = cutoff - RollupKeys.BucketMilliseconds(resolution);
        if (groups.Keys.Any(key => key.BucketStart >= lastBucket))
        {
            using var recent = connection.CreateCommand();
            recent.CommandText = $"{SelectBlocks} WHERE resolution = $1 AND bucket_start >= $2 AND bucket_start < $3";
            recent.Parameters.Add(new DuckDBParameter((int)resolution));
            recent.Parameters.Add(new DuckDBParameter(Timestamps.ToDateTime(lastBucket)));
            recent.Parameters.Add(new DuckDBParameter(Timestamps.ToDateTime(cutoff)));
            Merge(recent);
        }

        var older = groups.Keys.Where(key => key.BucketStart < lastBucket)
            .Select(key => RollupKeys.Group(key.PatientId, key.Kind, resolution, RollupKeys.GroupStart(resolution, key.BucketStart)))
            .Distinct();
        foreach (var chunk in older.Chunk(MaxLookupGroups))
        {
            // The group key named as the only condition: with any other, DuckDB scans the table instead of using the index.
            using var lookup = connection.CreateCommand();
            lookup.CommandText = $"{SelectBlocks} WHERE bucket_group IN ({string.Join(", ", chunk.Select((_, i) => $"${i + 1}"))})";
            foreach (var key in chunk)
            {
                lookup.Parameters.Add(new DuckDBParameter(key));
            }

            Merge(lookup);
        }

        using (var appender = connection.CreateAppender("block_staging"))
        {
            foreach (var ((patientId, kind, bucketStart), fresh) in groups)
            {
                var windows = merged.TryGetValue((patientId, kind, bucketStart), out var old)
                    ? old.Where(window => !fresh.ContainsKey(window.StartMs)).Concat(fresh.Values).ToList()
                    : [.. fresh.Values];
                windows.Sort(static (a, b) => a.StartMs.CompareTo(b.StartMs));
                AppendBlock(appender, patientId, kind, resolution, bucketStart, windows);
            }
        }

        Execute(connection, $"{UpsertBlocks} DELETE FROM block_staging;");
        Execute(connection, $"DELETE FROM rollups WHERE {inSlice}", (int)resolution, Timestamps.ToDateTime(cutoff));
        transaction.Commit();
        return moved;
    }

    private static void AppendBlock(DuckDBAppender appender, string patientId, VitalKind kind, Resolution resolution, long bucketStart, IReadOnlyList<RollupWindow> windows) =>
        appender.CreateRow()
            .AppendValue(patientId)
            .AppendValue((byte)kind)
            .AppendValue((int)resolution)
            .AppendValue(Timestamps.ToDateTime(bucketStart))
            .AppendValue(RollupKeys.Group(patientId, kind, resolution, RollupKeys.GroupStart(resolution, bucketStart)))
            .AppendValue(RollupKeys.Check(patientId, kind, resolution))
            .AppendValue(RollupBlock.Encode(windows))
            .EndRow();

    /// <summary>Deletes the windows of <paramref name="resolution"/> that start before <paramref name="beforeMs"/>, from rows and blocks; returns how many went.</summary>
    private static long DeleteBefore(DuckDBConnection connection, Resolution resolution, long beforeMs)
    {
        var before = Timestamps.ToDateTime(beforeMs);
        var wholeBefore = Timestamps.ToDateTime(beforeMs - RollupKeys.BucketMilliseconds(resolution));
        using var transaction = connection.BeginTransaction();
        var deleted = Scalar(connection, "SELECT count(*) FROM rollups WHERE resolution = $1 AND start < $2", (int)resolution, before);
        deleted += Scalar(connection, "SELECT coalesce(sum((octet_length(windows) - 1) // 64), 0)::BIGINT FROM rollup_blocks WHERE resolution = $1 AND bucket_start <= $2", (int)resolution, wholeBefore);

        // A block that straddles the cutoff keeps its later windows.
        using (var straddling = connection.CreateCommand())
        {
            straddling.CommandText = "SELECT patient_id, kind, epoch_ms(bucket_start), windows FROM rollup_blocks WHERE resolution = $1 AND bucket_start > $2 AND bucket_start < $3";
            straddling.Parameters.Add(new DuckDBParameter((int)resolution));
            straddling.Parameters.Add(new DuckDBParameter(wholeBefore));
            straddling.Parameters.Add(new DuckDBParameter(before));
            using var reader = straddling.ExecuteReader();
            using var appender = connection.CreateAppender("block_staging");
            var windows = new List<RollupWindow>();
            while (reader.Read())
            {
                windows.Clear();
                DecodeBlock(reader, 3, long.MinValue, long.MaxValue, windows);
                var kept = windows.Where(window => window.StartMs >= beforeMs).ToList();
                deleted += windows.Count - kept.Count;

                // An emptied block is written empty here and deleted below with the rest.
                AppendBlock(appender, reader.GetString(0), (VitalKind)reader.GetByte(1), resolution, reader.GetInt64(2), kept);
            }
        }

        Execute(connection, "DELETE FROM rollups WHERE resolution = $1 AND start < $2", (int)resolution, before);
        Execute(connection, "DELETE FROM rollup_blocks WHERE resolution = $1 AND bucket_start <= $2", (int)resolution, wholeBefore);
        Execute(connection, $"{UpsertBlocks} DELETE FROM block_staging;");
        Execute(connection, "DELETE FROM rollup_blocks WHERE resolution = $1 AND octet_length(windows) = 1", (int)resolution);
        transaction.Commit();
        return deleted;
    }

    private static long Scalar(DuckDBConnection connection, string sql, params object[] parameters)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        foreach (var parameter in parameters)
        {
            command.Parameters.Add(new DuckDBParameter(parameter));
        }

        return Convert.ToInt64(command.ExecuteScalar());
    }

    private static void Execute(DuckDBConnection connection, string sql, params object[] parameters)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        foreach (var parameter in parameters)
        {
            command.Parameters.Add(new DuckDBParameter(parameter));
        }

        command.ExecuteNonQuery();
    }

    [LoggerMessage(EventId = 3001, Level = LogLevel.Error, Message = "Rollup {Work} failed ({Count} rollups); written rollups are rebuilt from the raw store when their patient next activates")]
    private static partial void LogWorkFailed(ILogger logger, Exception exception, string work, int count);

    [LoggerMessage(EventId = 3002, Level = LogLevel.Debug, Message = "Compacted {Windows} rollup windows into blocks")]
    private static partial void LogCompacted(ILogger logger, long windows);

    private abstract class Work(string name)
    {
        public string Name { get; } = name;

        public TaskCompletionSource<long> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public virtual long Run(DuckDbRollupStore store, DuckDBConnection connection) => throw new NotSupportedException();
    }

    private sealed class WriteWork(IReadOnlyCollection<Rollup> rollups) : Work("write")
    {
        public IReadOnlyCollection<Rollup> Rollups { get; } = rollups;
    }

    /// <summary>A compaction, and where it is: the writer runs it a slice at a time (see <see cref="CompactStep"/>).</summary>
    private sealed class CompactWork() : Work("compaction")
    {
        public long? StartedMs { get; set; }

        public int ResolutionIndex { get; set; }

        public long Cutoff { get; set; }

        public int Slice { get; set; }

        /// <summary>The current resolution's slices; zero until it is sized.</summary>
        public int Slices { get; set; }

        public long Moved { get; set; }
    }

    private sealed class DeleteWork(Resolution resolution, long beforeMs) : Work("retention")
    {
        public override long Run(DuckDbRollupStore store, DuckDBConnection connection) => DeleteBefore(connection, resolution, beforeMs);
    }
}
