using System.Globalization;
using System.Net.Http;
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.RegularExpressions;
using Telemetry.Core.Readings;
using Telemetry.Core.Rollups;
using Telemetry.Core.Storage;
using Telemetry.Core.Vitals;

namespace Telemetry.Storage.Influx;

/// <summary>
/// Reads the series back from VictoriaMetrics through its export API (<c>/api/v1/export</c>), which streams each
/// series' raw samples as a JSON line, read as they arrive; windows, orders and limits are worked out here, one read
/// holding at most <see cref="MaxSamples"/> readings. Line protocol field
/// <c>value</c> of measurement <c>vitals</c> is the series <c>vitals_value</c> there, and so on.
/// </summary>
internal sealed partial class VictoriaMetricsSeriesReader : ISeriesReader
{
    /// <summary>The most readings one read holds in memory (a month of one vital at 1 Hz is 2.6 million).</summary>
    private const int MaxSamples = 10_000_000;

    private const long Day = 86_400_000;

    /// <summary>The first stretch a forward read of raw readings asks for: an hour, 3,600 readings of a vital at 1 Hz.</summary>
    private const long FirstStretchMs = 3_600_000;

    private readonly HttpClient _http;
    private readonly CoalescedFlush _flush;
    private readonly TimeProvider _timeProvider;

    public VictoriaMetricsSeriesReader(VictoriaMetricsOptions options, TimeProvider timeProvider)
    {
        _timeProvider = timeProvider;
        // Paths relative to the URL's own (a VictoriaMetrics behind a proxy at http://proxy/vm/): with a trailing slash, and
        // asked for without a leading one.
        _http = new HttpClient { BaseAddress = new Uri(options.Url.TrimEnd('/') + "/"), Timeout = options.RequestTimeout };
        _flush = new CoalescedFlush(async cancellationToken =>
        {
            using var response = await _http.GetAsync("internal/force_flush", cancellationToken);
            response.EnsureSuccessStatusCode();
        });
    }

    /// <summary>
    /// Asks VictoriaMetrics to make what it buffers searchable (it does so by itself within about a second, and a new
    /// series within about ten): one flush begun after the call, shared by every caller meanwhile.
    /// </summary>
    public async Task<bool> ShowAnsweredWritesAsync(CancellationToken cancellationToken)
    {
        try
        {
            await _flush.FlushAsync().WaitAsync(cancellationToken);
            return true;
        }
        catch (Exception) when (!cancellationToken.IsCancellationRequested)
        {
            // Refused (a server run with -forceFlushAuthKey, a proxy keeping /internal/ to itself) or away.
            return false;
        }
    }

    public async Task<IReadOnlyList<string>?> SettingsProblemsAsync(TimeSpan backfillHorizon, TimeSpan? rollupsKept, CancellationToken cancellationToken)
    {
        // The server's flags are among its own metrics: flag{name="retentionPeriod", value="1", is_set="false"} 1.
        var flags = new Dictionary<string, string>(StringComparer.Ordinal);
        try
        {
            using var response = await _http.GetAsync("metrics", HttpCompletionOption.ResponseHeadersRead, cancellationToken);
            if (!response.IsSuccessStatusCode)
            {
                return null;
            }

            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancellationToken));
            while (await reader.ReadLineAsync(cancellationToken) is { } line)
            {
                if (FlagLine().Match(line) is { Success: true } flag)
                {
                    flags[flag.Groups["name"].Value] = flag.Groups["value"].Value;
                }
            }
        }
        catch (Exception) when (!cancellationToken.IsCancellationRequested)
        {
            return null;
        }

        if (!flags.TryGetValue("retentionPeriod", out var retention) || !flags.TryGetValue("dedup.minScrapeInterval", out var dedup))
        {
            return null;
        }

        var problems = new List<string>();
        var keeps = ParseFlagDuration(retention, bareUnit: TimeSpan.FromDays(31));
        if (keeps < backfillHorizon + TimeSpan.FromDays(1))
        {
            problems.Add(string.Create(CultureInfo.InvariantCulture,
                $"VictoriaMetrics keeps samples for {keeps.Value.TotalDays:0.##} days (-retentionPeriod={retention}), less than Telemetry:Ingest:BackfillHorizon ({backfillHorizon.TotalDays:0.##} days) and a day: it answers 204 for an older reading and drops it, so readings acknowledged are lost; run it with a longer -retentionPeriod"));
        }

        // Telemetry:Retention does not apply here: the rollups go when the samples do, at -retentionPeriod (at most 100y,
        // which stands for good).
        if (rollupsKept is { } kept && keeps < (kept == TimeSpan.MaxValue ? TimeSpan.FromDays(36_500) : kept))
        {
            problems.Add(string.Create(CultureInfo.InvariantCulture,
                $"VictoriaMetrics keeps samples for {keeps.Value.TotalDays:0.##} days (-retentionPeriod={retention}), less than the rollups in it are to be kept (Telemetry:Retention:DayRollupDays: {SeriesBackend.Describe(kept)}): older windows go with the samples, and the long trends and daily summaries with them; run it with a longer -retentionPeriod (100y for good)"));
        }

        var interval = ParseFlagDuration(dedup, bareUnit: TimeSpan.FromSeconds(1));
        if (interval is null || interval == TimeSpan.Zero)
        {
            problems.Add("VictoriaMetrics does not deduplicate (-dedup.minScrapeInterval is not set): a reading written twice (a commit retried after a failure) is kept twice, in trends and exports; run it with -dedup.minScrapeInterval=1ms");
        }
        else if (interval > TimeSpan.FromMilliseconds(1))
        {
            problems.Add($"VictoriaMetrics keeps one sample per series in each {dedup} (-dedup.minScrapeInterval): a device's readings of a vital closer together than that are dropped after their acknowledgement; run it with -dedup.minScrapeInterval=1ms");
        }

        return problems;
    }

    /// <summary>
    /// A VictoriaMetrics duration flag as its metrics print it: its own form (<c>90d</c>, <c>1y</c>, <c>2w</c>) or Go's
    /// (<c>1m0s</c>, <c>1h30m0s</c>, <c>1ms</c>); a bare number counts in <paramref name="bareUnit"/>; null when unreadable.
    /// </summary>
    internal static TimeSpan? ParseFlagDuration(string value, TimeSpan bareUnit)
    {
        var parts = FlagDuration().Match(value);
        if (!parts.Success)
        {
            return null;
        }

        var total = TimeSpan.Zero;
        for (var i = 0; i < parts.Groups["number"].Captures.Count; i++)
        {
            var number = double.Parse(parts.Groups["number"].Captures[i].Value, NumberStyles.Float, CultureInfo.InvariantCulture);
            TimeSpan? unit = parts.Groups["unit"].Captures[i].Value switch
            {
                "" when parts.Groups["number"].Captures.Count == 1 => bareUnit,
                "ns" => TimeSpan.FromTicks(1) / 100,
                "us" or "\u00b5s" => TimeSpan.FromMicroseconds(1),
                "ms" => TimeSpan.FromMilliseconds(1),
                "s" => TimeSpan.FromSeconds(1),
                "m" => TimeSpan.FromMinutes(1),
                "h" => TimeSpan.FromHours(1),
                "d" => TimeSpan.FromDays(1),
                "w" => TimeSpan.FromDays(7),
                "y" => TimeSpan.FromDays(365),
                _ => null,
            };
            if (unit is not { } of)
            {
                return null;
            }

            total += of * number;
        }

        return total;
    }

    [GeneratedRegex(@"^flag\{name=""(?<name>[^""]+)"",\s*value=""(?<value>[^""]*)""")]
    private static partial Regex FlagLine();

    [GeneratedRegex(@"^(?:(?<number>[0-9]+(?:\.[0-9]+)?)(?<unit>[a-z\u00b5]*))+$")]
    private static partial Regex FlagDuration();

    public async Task<Dictionary<(VitalKind Kind, long TimestampMs), double>> ExistingAsync(
        string measurement, string deviceId, IReadOnlyCollection<VitalKind> kinds, long fromMs, long toMs, CancellationToken cancellationToken)
    {
        var existing = new Dictionary<(VitalKind Kind, long TimestampMs), double>();
        var names = string.Join('|', kinds.Select(kind => VitalCatalogue.Get(kind).Name));
        var selector = $"{{__name__=\"{measurement}_value\",{InfluxLayout.DeviceTag}={Quote(deviceId)},{InfluxLayout.KindTag}=~\"{names}\"}}";
        await foreach (var series in ExportAsync(selector, fromMs, toMs, cancellationToken))
        {
            if (InfluxLayout.TryParseKind(series.Label(InfluxLayout.KindTag), out var kind))
            {
                for (var i = 0; i < series.Timestamps.Length; i++)
                {
                    existing[(kind, series.Timestamps[i])] = series.Values[i];
                }
            }
        }

        return existing;
    }

    public async Task<RawAggregate> AggregateAsync(string patientId, long fromMs, long toMs, Resolution resolution, CancellationToken cancellationToken)
    {
        var windows = new Dictionary<(VitalKind Kind, long StartMs), RollupWindow>();
        await foreach (var series in ExportAsync(Selector("vitals_value", patientId), fromMs, toMs, cancellationToken))
        {
            if (!InfluxLayout.TryParseKind(series.Label(InfluxLayout.KindTag), out var kind))
            {
                continue;
            }

            for (var i = 0; i < series.Timestamps.Length; i++)
            {
                var (timestampMs, value) = (series.Timestamps[i], series.Values[i]);
                var key = (kind, resolution.WindowStart(timestampMs));
                windows[key] = windows.TryGetValue(key, out var window) ? window.Add(timestampMs, value) : RollupWindow.Of(key.Item2, timestampMs, value);
            }
        }

        long highestCommit = 0;
        await foreach (var series in ExportAsync(Selector("vitals_commit", patientId), fromMs, toMs, cancellationToken))
        {
            foreach (var commit in series.Values)
            {
                highestCommit = Math.Max(highestCommit, (long)commit);
            }
        }

        return new RawAggregate([.. windows.Select(entry => new KindWindow(entry.Key.Kind, entry.Value))], highestCommit);
    }

    public async Task<IReadOnlyList<QuarantinedReading>> ReadQuarantineAsync(string deviceId, int limit, CancellationToken cancellationToken)
    {
        // VictoriaMetrics keeps numbers only: the reason (a string field) is not kept, and every quarantine is "implausible".
        // Walked back from a day ahead in growing steps (a day, then eight, ...), so the latest few never read a
        // device's whole history when the recent past has enough.
        var found = new List<QuarantinedReading>();
        var selector = $"{{__name__=\"quarantine_value\",{InfluxLayout.DeviceTag}={Quote(deviceId)}}}";
        foreach (var (start, end) in TimeStretches.Back(0, Math.Min(_timeProvider.GetUtcNow().ToUnixTimeMilliseconds() + Day, FluxQueries.LatestMs)))
        {
            if (found.Count >= limit)
            {
                break;
            }

            var stretch = new List<QuarantinedReading>();
            await foreach (var series in ExportAsync(selector, start, end, cancellationToken))
            {
                if (InfluxLayout.TryParseKind(series.Label(InfluxLayout.KindTag), out var kind))
                {
                    for (var i = 0; i < series.Timestamps.Length; i++)
                    {
                        stretch.Add(new QuarantinedReading(new VitalReading(kind, series.Timestamps[i], series.Values[i]), "implausible"));
                    }
                }
            }

            found.AddRange(stretch.OrderByDescending(reading => reading.Reading.TimestampMs));
        }

        return found.Count > limit ? found[..limit] : found;
    }

    public async Task<IReadOnlyList<StoredReading>> ReadAsync(string patientId, VitalKind kind, long fromMs, long toMs, int limit, CancellationToken cancellationToken)
    {
        // Read forward a stretch at a time, each sized from the readings the last one held, so the first page of a
        // long range reads about a page, not the whole range.
        var found = new List<StoredReading>();
        var end = Math.Min(toMs, FluxQueries.LatestMs);
        var start = Math.Max(0, fromMs);
        var span = FirstStretchMs;
        while (start < end && found.Count < limit)
        {
            var stop = end - start <= span ? end : start + span;
            var readings = await CollectAsync(patientId, [kind], start, stop, cancellationToken);
            found.AddRange(readings.OrderBy(reading => reading.TimestampMs).ThenBy(reading => reading.DeviceId, StringComparer.Ordinal));
            span = NextStretch(span, readings.Count, limit - found.Count);
            start = stop;
        }

        return found.Count > limit ? found[..limit] : found;
    }

    /// <summary>
    /// The next stretch of a read walking a range for <paramref name="wanted"/> more readings, the last stretch
    /// (<paramref name="spanMs"/>) having held <paramref name="held"/>: as long again for as many as it held per
    /// wanted reading, at most eight times as long.
    /// </summary>
    internal static long NextStretch(long spanMs, int held, int wanted)
    {
        if (held == 0)
        {
            return spanMs > long.MaxValue / 8 ? long.MaxValue : spanMs * 8;
        }

        var scaled = (double)spanMs * Math.Max(wanted, 1) / held;
        return (long)Math.Clamp(scaled, 1_000, Math.Min(spanMs * 8.0, long.MaxValue / 8.0));
    }

    public async Task<IReadOnlyList<StoredReading>> ReadLatestAsync(string patientId, IReadOnlyCollection<VitalKind> kinds, long fromMs, long toMs, int perKind, CancellationToken cancellationToken)
    {
        // Walked back from the end in growing steps (a day, then eight, ...), so "the latest" never reads a whole
        // history when the recent past has enough.
        var found = new List<StoredReading>();
        var wanted = kinds.ToHashSet();
        foreach (var (start, end) in TimeStretches.Back(fromMs, Math.Min(toMs, FluxQueries.LatestMs)))
        {
            if (wanted.Count == 0)
            {
                break;
            }

            foreach (var (kind, newest) in await CollectNewestAsync(patientId, wanted, start, end, perKind, cancellationToken))
            {
                var have = found.Count(reading => reading.Kind == kind);
                found.AddRange(newest.Take(perKind - have));
                if (have + newest.Count >= perKind)
                {
                    wanted.Remove(kind);
                }
            }
        }

        return [.. found.GroupBy(reading => reading.Kind).SelectMany(kind => kind.OrderByDescending(reading => reading.TimestampMs))];
    }

    /// <summary>
    /// The newest <paramref name="perKind"/> readings of each kind in [<paramref name="fromMs"/>, <paramref name="toMs"/>),
    /// newest first, holding no more than that many per kind however many the range has, and reading the series a block
    /// at a time: a stretch walked back a year for a vital not sent in months is read through, not held.
    /// </summary>
    private async Task<Dictionary<VitalKind, List<StoredReading>>> CollectNewestAsync(
        string patientId, IReadOnlyCollection<VitalKind> kinds, long fromMs, long toMs, int perKind, CancellationToken cancellationToken)
    {
        // Read block by block, a reading written twice comes twice (the server's deduplication applies to whole series
        // only): what is kept is known by device and time, and kept once.
        var newest = new Dictionary<VitalKind, PriorityQueue<StoredReading, long>>();
        var kept = new HashSet<(VitalKind Kind, string DeviceId, long TimestampMs)>();
        var selector = ValuesOf(patientId, kinds);
        await foreach (var series in ExportAsync(selector, fromMs, toMs, cancellationToken, inBlocks: true))
        {
            if (!InfluxLayout.TryParseKind(series.Label(InfluxLayout.KindTag), out var kind) || series.Label(InfluxLayout.DeviceTag) is not { } deviceId)
            {
                continue;
            }

            if (!newest.TryGetValue(kind, out var heap))
            {
                newest[kind] = heap = new PriorityQueue<StoredReading, long>(perKind + 1);
            }

            for (var i = 0; i < series.Timestamps.Length; i++)
            {
                // The oldest kept is at the head: a newer reading takes its place once the kind has its fill.
                var timestampMs = series.Timestamps[i];
                var full = heap.Count >= perKind;
                if ((full && (!heap.TryPeek(out _, out var oldest) || timestampMs <= oldest)) || !kept.Add((kind, deviceId, timestampMs)))
                {
                    continue;
                }

                var reading = new StoredReading(deviceId, kind, timestampMs, series.Values[i]);
                if (full)
                {
                    var dropped = heap.DequeueEnqueue(reading, timestampMs);
                    kept.Remove((kind, dropped.DeviceId, dropped.TimestampMs));
                }
                else
                {
                    heap.Enqueue(reading, timestampMs);
                }
            }
        }

        return newest.ToDictionary(
            entry => entry.Key,
            entry => entry.Value.UnorderedItems.Select(item => item.Element).OrderByDescending(reading => reading.TimestampMs).ToList());
    }

    public async IAsyncEnumerable<StoredReading> StreamAsync(string patientId, IReadOnlyCollection<VitalKind> kinds, long fromMs, long toMs, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        // The export API answers series by series; putting them in time order means holding one day's at a time.
        for (var dayStart = Math.Max(0, fromMs); dayStart < Math.Min(toMs, FluxQueries.LatestMs); dayStart += Day)
        {
            var readings = await CollectAsync(patientId, kinds, dayStart, Math.Min(dayStart + Day, toMs), cancellationToken);
            foreach (var reading in readings.OrderBy(reading => reading.TimestampMs))
            {
                yield return reading;
            }
        }
    }

    /// <summary>
    /// Rollups are written here by time of writing, each with its window's start (see <see cref="InfluxLayout.AppendRollup"/>):
    /// every write of a window in the range happened at or after its start, so the writes from <paramref name="fromMs"/>
    /// until now are read, and the latest of each window kept.
    /// </summary>
    public async Task<IReadOnlyList<RollupWindow>> ReadRollupsAsync(string patientId, VitalKind kind, Resolution resolution, long fromMs, long toMs, CancellationToken cancellationToken)
    {
        var writes = new Dictionary<long, Dictionary<string, double>>();
        var selector = $"{{__name__=~\"rollups_.*\",{InfluxLayout.PatientTag}={Quote(patientId)},{InfluxLayout.KindTag}={Quote(VitalCatalogue.Get(kind).Name)},{InfluxLayout.ResolutionTag}=\"{resolution.ToWireName()}\"}}";
        var until = _timeProvider.GetUtcNow().AddDays(1).ToUnixTimeMilliseconds();
        await foreach (var series in ExportAsync(selector, fromMs, until, cancellationToken))
        {
            var field = series.Label("__name__")?["rollups_".Length..] ?? "";
            for (var i = 0; i < series.Timestamps.Length; i++)
            {
                if (!writes.TryGetValue(series.Timestamps[i], out var write))
                {
                    write = [];
                    writes[series.Timestamps[i]] = write;
                }

                write[field] = series.Values[i];
            }
        }

        var latest = new Dictionary<long, (long WrittenAtMs, Dictionary<string, double> Fields)>();
        foreach (var (writtenAtMs, fields) in writes)
        {
            if (fields.TryGetValue("start", out var startValue) && (long)startValue is var start && start >= fromMs && start < toMs
                && (!latest.TryGetValue(start, out var kept) || kept.WrittenAtMs < writtenAtMs))
            {
                latest[start] = (writtenAtMs, fields);
            }
        }

        return [.. latest.OrderBy(entry => entry.Key).Select(entry => new RollupWindow(
            entry.Key,
            (long)entry.Value.Fields.GetValueOrDefault("count"),
            entry.Value.Fields.GetValueOrDefault("sum"),
            entry.Value.Fields.GetValueOrDefault("min"),
            entry.Value.Fields.GetValueOrDefault("max"),
            entry.Value.Fields.GetValueOrDefault("squares"),
            entry.Value.Fields.GetValueOrDefault("last"),
            (long)entry.Value.Fields.GetValueOrDefault("lastTime")))];
    }

    /// <summary>The series selector of a patient's readings of <paramref name="kinds"/>, every device's.</summary>
    private static string ValuesOf(string patientId, IReadOnlyCollection<VitalKind> kinds) =>
        $"{{__name__=\"vitals_value\",{InfluxLayout.PatientTag}={Quote(patientId)},{InfluxLayout.KindTag}=~\"{string.Join('|', kinds.Select(kind => VitalCatalogue.Get(kind).Name))}\"}}";

    /// <summary>VictoriaMetrics deletes whole series only; what it keeps is its own <c>-retentionPeriod</c>.</summary>
    public Task<bool> DeleteBeforeAsync(string measurement, Resolution? resolution, long beforeMs, CancellationToken cancellationToken) => Task.FromResult(false);

    public void Dispose() => _http.Dispose();

    private async Task<List<StoredReading>> CollectAsync(string patientId, IReadOnlyCollection<VitalKind> kinds, long fromMs, long toMs, CancellationToken cancellationToken)
    {
        var readings = new List<StoredReading>();
        if (kinds.Count == 0)
        {
            return readings;
        }

        var selector = ValuesOf(patientId, kinds);
        await foreach (var series in ExportAsync(selector, fromMs, toMs, cancellationToken))
        {
            if (InfluxLayout.TryParseKind(series.Label(InfluxLayout.KindTag), out var kind) && series.Label(InfluxLayout.DeviceTag) is { } deviceId)
            {
                if (readings.Count + series.Timestamps.Length > MaxSamples)
                {
                    throw new InvalidOperationException($"more than {MaxSamples} readings in one read; ask for a shorter range");
                }

                for (var i = 0; i < series.Timestamps.Length; i++)
                {
                    readings.Add(new StoredReading(deviceId, kind, series.Timestamps[i], series.Values[i]));
                }
            }
        }

        return readings;
    }

    /// <summary>Every series matching <paramref name="selector"/> with its samples in [<paramref name="fromMs"/>, <paramref name="toMs"/>).</summary>
    /// <param name="inBlocks">
    /// Whether the server may answer a series in several lines, one per block it stores, samples unsorted
    /// (<c>reduce_mem_usage=1</c>): no line then holds a whole series, for a caller that needs neither order nor a
    /// series whole.
    /// </param>
    private async IAsyncEnumerable<Series> ExportAsync(string selector, long fromMs, long toMs, [EnumeratorCancellation] CancellationToken cancellationToken, bool inBlocks = false)
    {
        fromMs = Math.Clamp(fromMs, 0, FluxQueries.LatestMs);
        toMs = Math.Clamp(toMs, 0, FluxQueries.LatestMs);
        if (toMs <= fromMs)
        {
            yield break;
        }

        // The export range includes its end: stop a millisecond short of it.
        List<KeyValuePair<string, string>> fields = [new("match[]", selector), new("start", Seconds(fromMs)), new("end", Seconds(toMs - 1))];
        if (inBlocks)
        {
            fields.Add(new("reduce_mem_usage", "1"));
        }

        using var form = new FormUrlEncodedContent(fields);
        using var request = new HttpRequestMessage(HttpMethod.Post, "api/v1/export") { Content = form };
        using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        response.EnsureSuccessStatusCode();
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancellationToken));

        // The client's timeout ends with the headers: a body that stops coming (a half-open connection) would hold the
        // read, and a commit's lookup of what is stored, for good. Each wait for the next line is bounded instead.
        using var idle = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        while (await ReadLineAsync(reader, idle, cancellationToken) is { } line)
        {
            if (line.Length == 0)
            {
                continue;
            }

            using var json = JsonDocument.Parse(line);
            var root = json.RootElement;
            var labels = root.GetProperty("metric").EnumerateObject().ToDictionary(label => label.Name, label => label.Value.GetString() ?? "", StringComparer.Ordinal);
            var timestamps = root.GetProperty("timestamps").EnumerateArray().Select(value => value.GetInt64()).ToArray();
            var values = root.GetProperty("values").EnumerateArray().Select(ReadNumber).ToArray();
            yield return new Series(labels, timestamps, values);
        }
    }

    private async Task<string?> ReadLineAsync(StreamReader reader, CancellationTokenSource idle, CancellationToken cancellationToken)
    {
        idle.CancelAfter(_http.Timeout);
        try
        {
            return await reader.ReadLineAsync(idle.Token);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new TimeoutException($"VictoriaMetrics sent no more of an export for {_http.Timeout.TotalSeconds:0} s (the request timeout).");
        }
    }

    private static double ReadNumber(JsonElement value) => value.ValueKind == JsonValueKind.Number
        ? value.GetDouble()
        : double.Parse(value.GetString()!, CultureInfo.InvariantCulture);

    private static string Seconds(long ms) => (ms / 1000.0).ToString("0.###", CultureInfo.InvariantCulture);

    private static string Selector(string metric, string patientId) => $"{{__name__=\"{metric}\",{InfluxLayout.PatientTag}={Quote(patientId)}}}";

    /// <summary>A label value in a series selector, quotes and backslashes escaped.</summary>
    private static string Quote(string value) => "\"" + value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal) + "\"";

    private sealed record Series(Dictionary<string, string> Labels, long[] Timestamps, double[] Values)
    {
        public string? Label(string name) => Labels.GetValueOrDefault(name);
    }
}
