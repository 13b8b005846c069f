using System.Globalization;
using InfluxDB.Client;
using InfluxDB.Client.Api.Domain;
using InfluxDB.Client.Core;
using InfluxDB.Client.Core.Flux.Domain;
using Telemetry.Core.Readings;
using Telemetry.Core.Rollups;
using Telemetry.Core.Storage;
using Telemetry.Core.Vitals;

namespace Telemetry.Storage.Influx;

/// <summary>
/// Reads the series from InfluxDB 2 through Flux (see <see cref="FluxQueries"/>). A query that sorts holds what it sorts
/// in the server's memory, so none sorts more than a bounded stretch: the newest readings and quarantined readings are
/// looked for a day back, then eight, and so on, until found; an export is sorted a day at a time.
/// </summary>
internal sealed class FluxSeriesReader(InfluxDBClient client, string bucket, string org, TimeProvider timeProvider) : ISeriesReader
{
    private const long Day = 86_400_000;

    private readonly IQueryApi _queries = client.GetQueryApi();

    public async Task<Dictionary<(VitalKind Kind, long TimestampMs), double>> ExistingAsync(
        string measurement, string deviceId, IReadOnlyCollection<VitalKind> kinds, long fromMs, long toMs, CancellationToken cancellationToken)
    {
        var existing = new Dictionary<(VitalKind Kind, long TimestampMs), double>();
        foreach (var reading in (await QueryAsync(FluxQueries.Existing(bucket, measurement, deviceId, kinds, fromMs, toMs), cancellationToken))
            .Select(ToStoredReading).OfType<StoredReading>())
        {
            existing[(reading.Kind, reading.TimestampMs)] = reading.Value;
        }

        return existing;
    }

    public async Task<IReadOnlyList<string>?> SettingsProblemsAsync(TimeSpan backfillHorizon, TimeSpan? rollupsKept, CancellationToken cancellationToken)
    {
        Bucket? found;
        try
        {
            found = await client.GetBucketsApi().FindBucketByNameAsync(bucket, cancellationToken);
        }
        catch (Exception) when (!cancellationToken.IsCancellationRequested)
        {
            return null;
        }

        // Not found may be a token that writes but may not list buckets: a missing bucket shows in the writes' refusal.
        if (found is null)
        {
            return null;
        }

        var keepsSeconds = found.RetentionRules?.Where(rule => rule.EverySeconds > 0).Select(rule => rule.EverySeconds).DefaultIfEmpty(0).Min() ?? 0;
        if (keepsSeconds == 0)
        {
            return [];
        }

        var keeps = TimeSpan.FromSeconds(keepsSeconds);
        var problems = new List<string>();
        if (keeps < backfillHorizon + TimeSpan.FromDays(1))
        {
            problems.Add(string.Create(CultureInfo.InvariantCulture,
                $"InfluxDB bucket {bucket} keeps points for {keeps.TotalDays:0.##} days, less than Telemetry:Ingest:BackfillHorizon ({backfillHorizon.TotalDays:0.##} days) and a day: a commit holding a reading older than the bucket keeps is refused whole, and its devices are not acknowledged; lengthen the bucket's retention or shorten the horizon"));
        }

        if (rollupsKept is { } kept && keeps < kept)
        {
            problems.Add(string.Create(CultureInfo.InvariantCulture,
                $"InfluxDB bucket {bucket} keeps points for {keeps.TotalDays:0.##} days, less than the rollups in it are to be kept (Telemetry:Retention:DayRollupDays: {SeriesBackend.Describe(kept)}): the bucket deletes older windows, and the long trends and daily summaries with them; lengthen the bucket's retention (0: for good), or shorten the rollups'"));
        }

        return problems;
    }

    /// <summary>InfluxDB cannot be asked to: a read waits out <see cref="SeriesServerOptions.ReadableAfter"/>.</summary>
    public Task<bool> ShowAnsweredWritesAsync(CancellationToken cancellationToken) => Task.FromResult(false);

    public async Task<RawAggregate> AggregateAsync(string patientId, long fromMs, long toMs, Resolution resolution, CancellationToken cancellationToken)
    {
        var windows = new List<KindWindow>();
        long highestCommit = 0;
        foreach (var record in await QueryAsync(FluxQueries.Aggregate(bucket, patientId, fromMs, toMs, resolution), cancellationToken))
        {
            switch (record.GetValueByKey("result") as string)
            {
                case "commit":
                    highestCommit = Math.Max(highestCommit, Convert.ToInt64(record.GetValue(), CultureInfo.InvariantCulture));
                    break;
                case "windows" when InfluxLayout.TryParseKind(record.GetValueByKey(InfluxLayout.KindTag), out var kind):
                    var lastMs = Long(record, "lastTime") / 1_000_000;
                    windows.Add(new KindWindow(kind, new RollupWindow(
                        resolution.WindowStart(lastMs), Long(record, "count"), Double(record, "sum"), Double(record, "min"),
                        Double(record, "max"), Double(record, "squares"), Double(record, "last"), lastMs)));
                    break;
            }
        }

        return new RawAggregate(windows, highestCommit);
    }

    public async Task<IReadOnlyList<QuarantinedReading>> ReadQuarantineAsync(string deviceId, int limit, CancellationToken cancellationToken)
    {
        // From a day ahead (a reading may be that far ahead of the clock) back to the start of time, newest first.
        var readings = new List<QuarantinedReading>();
        foreach (var (fromMs, toMs) in TimeStretches.Back(0, Math.Min(timeProvider.GetUtcNow().ToUnixTimeMilliseconds() + Day, FluxQueries.LatestMs)))
        {
            foreach (var record in await QueryAsync(FluxQueries.Quarantine(bucket, deviceId, fromMs, toMs, limit - readings.Count), cancellationToken))
            {
                if (InfluxLayout.TryParseKind(record.GetValueByKey(InfluxLayout.KindTag), out var kind) && record.GetTime() is { } time)
                {
                    readings.Add(new QuarantinedReading(
                        new VitalReading(kind, time.ToUnixTimeMilliseconds(), Double(record, InfluxLayout.ValueField)),
                        record.GetValueByKey(InfluxLayout.ReasonField) as string ?? "implausible"));
                }
            }

            if (readings.Count >= limit)
            {
                break;
            }
        }

        return readings;
    }

    public async Task<IReadOnlyList<StoredReading>> ReadAsync(string patientId, VitalKind kind, long fromMs, long toMs, int limit, CancellationToken cancellationToken) =>
        [.. (await QueryAsync(FluxQueries.Read(bucket, patientId, kind, fromMs, toMs, limit), cancellationToken)).Select(ToStoredReading).OfType<StoredReading>()];

    public async Task<IReadOnlyList<StoredReading>> ReadLatestAsync(string patientId, IReadOnlyCollection<VitalKind> kinds, long fromMs, long toMs, int perKind, CancellationToken cancellationToken)
    {
        // Each vital's newest first, stretch after stretch back, until each has its fill or the range is walked.
        var found = kinds.Distinct().ToDictionary(kind => kind, _ => new List<StoredReading>());
        foreach (var (start, end) in TimeStretches.Back(fromMs, Math.Min(toMs, FluxQueries.LatestMs)))
        {
            var wanted = found.Where(entry => entry.Value.Count < perKind).Select(entry => entry.Key).ToList();
            if (wanted.Count == 0)
            {
                break;
            }

            foreach (var reading in (await QueryAsync(FluxQueries.ReadLatest(bucket, patientId, wanted, start, end, perKind), cancellationToken)).Select(ToStoredReading).OfType<StoredReading>())
            {
                if (found.TryGetValue(reading.Kind, out var newest) && newest.Count < perKind)
                {
                    newest.Add(reading);
                }
            }
        }

        return [.. found.Values.SelectMany(newest => newest)];
    }

    public async IAsyncEnumerable<StoredReading> StreamAsync(string patientId, IReadOnlyCollection<VitalKind> kinds, long fromMs, long toMs, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken)
    {
        if (kinds.Count == 0)
        {
            yield break;
        }

        // A day at a time, so the server sorts a day's readings at most; rows are read from each response as it
        // arrives, so an export never holds even that.
        for (var dayStart = Math.Max(0, fromMs); dayStart < Math.Min(toMs, FluxQueries.LatestMs); dayStart += Day)
        {
            var dayEnd = Math.Min(dayStart + Day, toMs);
            await foreach (var row in _queries.QueryAsyncEnumerable<ReadingRow>(FluxQueries.Stream(bucket, patientId, kinds, dayStart, dayEnd), org, cancellationToken))
            {
                if (InfluxLayout.TryParseKind(row.Kind, out var kind) && row.Device is { } deviceId)
                {
                    yield return new StoredReading(deviceId, kind, new DateTimeOffset(DateTime.SpecifyKind(row.Time, DateTimeKind.Utc)).ToUnixTimeMilliseconds(), row.Value);
                }
            }
        }
    }

    public async Task<IReadOnlyList<RollupWindow>> ReadRollupsAsync(string patientId, VitalKind kind, Resolution resolution, long fromMs, long toMs, CancellationToken cancellationToken)
    {
        var windows = new List<RollupWindow>();
        foreach (var record in await QueryAsync(FluxQueries.Rollups(bucket, patientId, kind, resolution, fromMs, toMs), cancellationToken))
        {
            if (record.GetTime() is { } start)
            {
                windows.Add(new RollupWindow(
                    start.ToUnixTimeMilliseconds(), Long(record, "count"), Double(record, "sum"), Double(record, "min"),
                    Double(record, "max"), Double(record, "squares"), Double(record, "last"), Long(record, "lastTime")));
            }
        }

        return windows;
    }

    public async Task<bool> DeleteBeforeAsync(string measurement, Resolution? resolution, long beforeMs, CancellationToken cancellationToken)
    {
        // InfluxDB deletes [start, stop], its stop included: the last millisecond before beforeMs (points are written to
        // the millisecond), so a window stamped at beforeMs stays.
        var before = DateTimeOffset.FromUnixTimeMilliseconds(beforeMs - 1).UtcDateTime;
        var predicate = resolution is { } of
            ? $"_measurement=\"{measurement}\" AND {InfluxLayout.ResolutionTag}=\"{of.ToWireName()}\""
            : $"_measurement=\"{measurement}\"";
        await client.GetDeleteApi().Delete(DateTime.UnixEpoch, before, predicate, bucket, org, cancellationToken);
        return true;
    }

    public void Dispose()
    {
    }

    private async Task<IEnumerable<FluxRecord>> QueryAsync(string flux, CancellationToken cancellationToken) =>
        (await _queries.QueryAsync(flux, org, cancellationToken)).SelectMany(table => table.Records);

    private static StoredReading? ToStoredReading(FluxRecord record) =>
        InfluxLayout.TryParseKind(record.GetValueByKey(InfluxLayout.KindTag), out var kind)
        && record.GetValueByKey(InfluxLayout.DeviceTag) is string deviceId
        && record.GetTime() is { } time
            ? new StoredReading(deviceId, kind, time.ToUnixTimeMilliseconds(), Convert.ToDouble(record.GetValue(), CultureInfo.InvariantCulture))
            : null;

    private static long Long(FluxRecord record, string column) => Convert.ToInt64(record.GetValueByKey(column), CultureInfo.InvariantCulture);

    private static double Double(FluxRecord record, string column) => Convert.ToDouble(record.GetValueByKey(column), CultureInfo.InvariantCulture);

    /// <summary>One row of a raw read, as InfluxDB.Client maps it from the response.</summary>
    internal sealed class ReadingRow
    {
        [Column(InfluxLayout.DeviceTag, IsTag = true)]
        public string? Device { get; set; }

        [Column(InfluxLayout.KindTag, IsTag = true)]
        public string? Kind { get; set; }

        [Column(IsTimestamp = true)]
        public DateTime Time { get; set; }

        [Column("_value")]
        public double Value { get; set; }
    }
}
