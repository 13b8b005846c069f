using System.Diagnostics;
using System.Net;
using System.Net.Http;
using System.Runtime.CompilerServices;
using System.Text;
using InfluxDB.Client;
using InfluxDB.Client.Api.Domain;
using InfluxDB.Client.Core.Exceptions;
using InfluxDB.Client.Core.Flux.Domain;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Telemetry.Core.Readings;
using Telemetry.Core.Rollups;
using Telemetry.Core.Storage;
using Telemetry.Core.Vitals;
using Telemetry.Storage.DuckDb;

namespace Telemetry.Storage.Influx;

/// <summary>
/// The raw series in InfluxDB 2 (or anything that speaks its v2 write API and Flux). A commit writes the flush as line
/// protocol, gzip-compressed, in requests of at most <see cref="MaxLinesPerWrite"/> lines, and returns only once
/// InfluxDB has answered 204 for all of them; busy (429) and failing (5xx, unreachable) answers are retried with
/// growing waits for <see cref="InfluxOptions.RetryFor"/>, after which the commit fails and nothing is acknowledged.
/// Nothing is buffered here: the commit pipeline's bounded queue is the only place readings wait.
/// </summary>
/// <remarks>
/// <para>
/// InfluxDB.Client's background <c>WriteApi</c> batches too, but it acknowledges nothing to the caller and drops points
/// when its buffer overflows; the pipeline already gathers thousands of readings per commit, so each commit is written
/// with <c>WriteApiAsync</c> and awaited.
/// </para>
/// <para>
/// A reading's identity in InfluxDB is its series and time, so a reading written twice is stored once. Which batch
/// numbers each device has committed is kept in the local DuckDB file (as the embedded store keeps it), so a resent
/// batch is answered as a duplicate and not handed to the patient's grain again. That record is written after
/// InfluxDB's answer: a crash between the two, or a device resending to another node of a cluster, stores the batch
/// once all the same but may count it twice in the live windows until the grain next rebuilds from the raw series.
/// </para>
/// </remarks>
public sealed partial class InfluxRawSeriesStore : IRawSeriesStore, IDisposable
{
    /// <summary>The most lines in one write request.</summary>
    public const int MaxLinesPerWrite = 10_000;

    private const int WriteConcurrency = 2;

    private readonly InfluxOptions _options;
    private readonly InfluxDBClient _client;
    private readonly IWriteApiAsync _writes;
    private readonly IQueryApi _queries;
    private readonly SequenceLedger _sequences;
    private readonly DuckDB.NET.Data.DuckDBConnection _ledgerConnection;
    private readonly TimeProvider _timeProvider;
    private readonly ILogger<InfluxRawSeriesStore> _logger;
    private readonly List<string> _chunks = [];
    private readonly StringBuilder _lines = new();
    private long _lastCommitId;

    public InfluxRawSeriesStore(IOptions<InfluxOptions> options, DuckDbDatabase database, TimeProvider timeProvider, ILogger<InfluxRawSeriesStore> logger)
    {
        _options = options.Value;
        _timeProvider = timeProvider;
        _logger = logger;
        _client = new InfluxDBClient(new InfluxDBClientOptions(_options.Url)
        {
            Token = _options.ResolveToken(),
            Org = _options.Org,
            Bucket = _options.Bucket,
            Timeout = _options.RequestTimeout,
        });
        if (_options.Gzip)
        {
            _client.EnableGzip();
        }

        _writes = _client.GetWriteApiAsync();
        _queries = _client.GetQueryApi();
        _ledgerConnection = database.OpenConnection();
        _sequences = new SequenceLedger(_ledgerConnection);
    }

    /// <summary>Where the series are written, for health reports.</summary>
    public string Describe() => $"InfluxDB bucket {_options.Bucket} at {_options.Url}";

    public async ValueTask<long> CommitAsync(IReadOnlyList<DeviceBatch> batches, Memory<BatchOutcome> outcomes, CancellationToken cancellationToken = default)
    {
        // Commit ids are microseconds of the clock, so they keep increasing across restarts and across the nodes of a
        // cluster (as far as their clocks agree), as the grains' rebuild expects.
        var commitId = Math.Max(_lastCommitId + 1, _timeProvider.GetUtcNow().ToUnixTimeMilliseconds() * 1_000);
        Stage(batches, outcomes.Span, commitId);
        try
        {
            if (_chunks.Count > 0)
            {
                await Parallel.ForEachAsync(
                    _chunks,
                    new ParallelOptions { MaxDegreeOfParallelism = WriteConcurrency, CancellationToken = cancellationToken },
                    (chunk, token) => new ValueTask(WriteAsync(chunk, token)));
            }
        }
        catch
        {
            _sequences.RolledBack();
            throw;
        }

        // InfluxDB holds every line: the commit is durable and nothing from here on may fail it.
        _lastCommitId = commitId;
        RecordSequences();
        return commitId;
    }

    /// <summary>Decides each batch's outcome and writes the lines of what is new into <see cref="_chunks"/>.</summary>
    private void Stage(IReadOnlyList<DeviceBatch> batches, Span<BatchOutcome> outcomes, long commitId)
    {
        _chunks.Clear();
        _lines.Clear();
        var lines = 0;
        for (var i = 0; i < batches.Count; i++)
        {
            var batch = batches[i];
            if (batch.Sequence != 0 && _sequences.IsCommitted(batch.DeviceId, batch.Sequence))
            {
                outcomes[i] = BatchOutcome.DuplicateBatch(batch.Readings.Length);
                continue;
            }

            if (batch.Sequence != 0)
            {
                _sequences.Stage(batch.DeviceId, batch.Sequence);
            }

            foreach (var reading in batch.Readings.Span)
            {
                InfluxLayout.AppendLine(_lines, InfluxLayout.Vitals, batch.DeviceId, batch.PatientId, reading, commitId);
                lines = EndChunkIfFull(lines + 1);
            }

            foreach (var reading in batch.Quarantined.Span)
            {
                InfluxLayout.AppendLine(_lines, InfluxLayout.Quarantine, batch.DeviceId, batch.PatientId, reading, commitId, "implausible");
                lines = EndChunkIfFull(lines + 1);
            }

            outcomes[i] = new BatchOutcome(CommitOutcome.Stored, batch.Readings, 0);
        }

        if (lines > 0)
        {
            _chunks.Add(_lines.ToString());
        }
    }

    private int EndChunkIfFull(int lines)
    {
        if (lines < MaxLinesPerWrite)
        {
            return lines;
        }

        _chunks.Add(_lines.ToString());
        _lines.Clear();
        return 0;
    }

    private void RecordSequences()
    {
        try
        {
            using var transaction = _ledgerConnection.BeginTransaction();
            _sequences.AppendStaged(_ledgerConnection);
            transaction.Commit();
            _sequences.Committed(_ledgerConnection);
        }
        catch (Exception exception)
        {
            // The readings are stored; only the memory of their batch numbers is lost, so a resend is stored once
            // again (same series and time) and may be counted twice in the live windows until the next rebuild.
            _sequences.RolledBack();
            LogLedgerFailed(_logger, exception);
        }
    }

    private async Task WriteAsync(string lines, CancellationToken cancellationToken)
    {
        var started = _timeProvider.GetTimestamp();
        var delay = _options.RetryDelay;
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await _writes.WriteRecordAsync(lines, WritePrecision.Ms, _options.Bucket, _options.Org, cancellationToken);
                return;
            }
            catch (Exception exception) when (!cancellationToken.IsCancellationRequested && IsTransient(exception, out var retryAfter))
            {
                var left = _options.RetryFor - _timeProvider.GetElapsedTime(started);
                if (left <= TimeSpan.Zero)
                {
                    throw;
                }

                var wait = Min(Min(retryAfter > delay ? retryAfter : delay, _options.MaxRetryDelay), left);
                LogRetrying(_logger, attempt, Status(exception), wait.TotalMilliseconds);
                await Task.Delay(wait, _timeProvider, cancellationToken);
                delay = Min(delay * 2, _options.MaxRetryDelay);
            }
        }
    }

    /// <summary>
    /// Busy (429), failing (5xx) or unreachable: worth trying again. Anything else (a refused token, a missing bucket, a
    /// malformed line) fails at once, since waiting would not change the answer.
    /// </summary>
    internal static bool IsTransient(Exception exception, out TimeSpan retryAfter)
    {
        retryAfter = TimeSpan.Zero;
        switch (exception)
        {
            case HttpException http when http.Status is 429 or >= 500 or 0:
                retryAfter = http.RetryAfter is > 0 and var seconds ? TimeSpan.FromSeconds(seconds) : TimeSpan.Zero;
                return true;
            case HttpException:
                return false;
            case HttpRequestException or System.IO.IOException or System.Net.Sockets.SocketException or TimeoutException or TaskCanceledException:
                return true;
            default:
                return exception.InnerException is { } inner && IsTransient(inner, out retryAfter);
        }
    }

    private static string Status(Exception exception) => exception switch
    {
        HttpException { Status: > 0 } http => ((HttpStatusCode)http.Status).ToString(),
        _ => exception.GetType().Name,
    };

    private static TimeSpan Min(TimeSpan a, TimeSpan b) => a < b ? a : b;

    public async Task<RawAggregate> AggregateAsync(string patientId, long fromMs, long toMs, Resolution resolution, CancellationToken cancellationToken = default)
    {
        var tables = await _queries.QueryAsync(FluxQueries.Aggregate(_options.Bucket, patientId, fromMs, toMs, resolution), _options.Org, cancellationToken);
        var windows = new List<KindWindow>();
        long highestCommit = 0;
        foreach (var record in tables.SelectMany(table => table.Records))
        {
            switch (record.GetValueByKey("result") as string)
            {
                case "commit":
                    highestCommit = Math.Max(highestCommit, Convert.ToInt64(record.GetValue(), System.Globalization.CultureInfo.InvariantCulture));
                    break;
                case "windows" when InfluxLayout.TryParseKind(record.GetValueByKey(InfluxLayout.KindTag), out var kind):
                    var lastMs = Long(record, "lastTime") / 1_000_000;
                    windows.Add(new KindWindow(kind, new RollupWindow(
                        resolution.WindowStart(lastMs),
                        Long(record, "count"),
                        Double(record, "sum"),
                        Double(record, "min"),
                        Double(record, "max"),
                        Double(record, "squares"),
                        Double(record, "last"),
                        lastMs)));
                    break;
            }
        }

        return new RawAggregate(windows, highestCommit);
    }

    public async Task<IReadOnlyList<QuarantinedReading>> ReadQuarantineAsync(string deviceId, int limit, CancellationToken cancellationToken = default)
    {
        var tables = await _queries.QueryAsync(FluxQueries.Quarantine(_options.Bucket, deviceId, limit), _options.Org, cancellationToken);
        var readings = new List<QuarantinedReading>();
        foreach (var record in tables.SelectMany(table => table.Records))
        {
            if (InfluxLayout.TryParseKind(record.GetValueByKey(InfluxLayout.KindTag), out var kind) && record.GetTime() is { } time)
            {
                readings.Add(new QuarantinedReading(
                    new VitalReading(kind, time.ToUnixTimeMilliseconds(), Double(record, InfluxLayout.ValueField)),
                    record.GetValueByKey(InfluxLayout.ReasonField) as string ?? "implausible"));
            }
        }

        return readings;
    }

    public async Task<IReadOnlyList<StoredReading>> ReadAsync(string patientId, VitalKind kind, long fromMs, long toMs, int limit, CancellationToken cancellationToken = default)
    {
        var tables = await _queries.QueryAsync(FluxQueries.Read(_options.Bucket, patientId, kind, fromMs, toMs, limit), _options.Org, cancellationToken);
        return [.. tables.SelectMany(table => table.Records).Select(ToStoredReading).OfType<StoredReading>()];
    }

    public async Task<IReadOnlyList<StoredReading>> ReadLatestAsync(string patientId, IReadOnlyCollection<VitalKind> kinds, long fromMs, long toMs, int perKind, CancellationToken cancellationToken = default)
    {
        if (kinds.Count == 0)
        {
            return [];
        }

        var tables = await _queries.QueryAsync(FluxQueries.ReadLatest(_options.Bucket, patientId, kinds, fromMs, toMs, perKind), _options.Org, cancellationToken);
        return [.. tables.SelectMany(table => table.Records).Select(ToStoredReading).OfType<StoredReading>()];
    }

    public async IAsyncEnumerable<StoredReading> StreamAsync(string patientId, IReadOnlyCollection<VitalKind> kinds, long fromMs, long toMs, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        if (kinds.Count == 0)
        {
            yield break;
        }

        // Rows are read from the response as it arrives, so an export never holds the whole range.
        var rows = _queries.QueryAsyncEnumerable<FluxReadingRow>(FluxQueries.Stream(_options.Bucket, patientId, kinds, fromMs, toMs), _options.Org, cancellationToken);
        await foreach (var row in rows)
        {
            if (InfluxLayout.TryParseKind(row.Kind, out var kind) && row.Device is { } deviceId)
            {
                yield return new StoredReading(deviceId, kind, new DateTimeOffset(DateTime.SpecifyKind(row.Time, DateTimeKind.Utc)).ToUnixTimeMilliseconds(), row.Value);
            }
        }
    }

    public async Task<long> DeleteBeforeAsync(long beforeMs, CancellationToken cancellationToken = default)
    {
        // InfluxDB's delete API says nothing about how many points went.
        var before = DateTimeOffset.FromUnixTimeMilliseconds(beforeMs).UtcDateTime;
        var deletes = _client.GetDeleteApi();
        foreach (var measurement in new[] { InfluxLayout.Vitals, InfluxLayout.Quarantine })
        {
            await deletes.Delete(DateTime.UnixEpoch, before, $"_measurement=\"{measurement}\"", _options.Bucket, _options.Org, cancellationToken);
        }

        return -1;
    }

    public void Dispose()
    {
        _client.Dispose();
        _ledgerConnection.Dispose();
    }

    /// <summary>One row of a raw read, as InfluxDB.Client maps it from the response.</summary>
    internal sealed class FluxReadingRow
    {
        [InfluxDB.Client.Core.Column(InfluxLayout.DeviceTag, IsTag = true)]
        public string? Device { get; set; }

        [InfluxDB.Client.Core.Column(InfluxLayout.KindTag, IsTag = true)]
        public string? Kind { get; set; }

        [InfluxDB.Client.Core.Column(IsTimestamp = true)]
        public DateTime Time { get; set; }

        [InfluxDB.Client.Core.Column("_value")]
        public double Value { get; set; }
    }

    private static StoredReading? ToStoredReading(FluxRecord record) =>
        InfluxLayout.TryParseKind(record.GetValueByKey(InfluxLayout.KindTag), out var kind)
        && record.GetValueByKey(InfluxLayout.DeviceTag) is string deviceId
        && record.GetTime() is { } time
            ? new StoredReading(deviceId, kind, time.ToUnixTimeMilliseconds(), Convert.ToDouble(record.GetValue(), System.Globalization.CultureInfo.InvariantCulture))
            : null;

    private static long Long(FluxRecord record, string column) =>
        Convert.ToInt64(record.GetValueByKey(column), System.Globalization.CultureInfo.InvariantCulture);

    private static double Double(FluxRecord record, string column) =>
        Convert.ToDouble(record.GetValueByKey(column), System.Globalization.CultureInfo.InvariantCulture);

    [LoggerMessage(EventId = 2300, Level = LogLevel.Warning, Message = "InfluxDB write attempt {Attempt} failed ({Status}); retrying in {DelayMs} ms")]
    private static partial void LogRetrying(ILogger logger, int attempt, string status, double delayMs);

    [LoggerMessage(EventId = 2301, Level = LogLevel.Warning, Message = "Readings are in InfluxDB but their batch numbers could not be recorded in the local file; a resend of those batches will be stored once but may be counted twice in live windows")]
    private static partial void LogLedgerFailed(ILogger logger, Exception exception);
}
