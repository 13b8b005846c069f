using Telemetry.Core.Grains;
using Telemetry.Core.Rollups;
using Telemetry.Core.Storage;
using Telemetry.Core.Vitals;

namespace Telemetry.Api.Trends;

/// <summary>
/// Reads a patient's series for every API that serves them (REST, FHIR, exports): rollup windows from the store
/// completed by the window the patient's grain still has open, raw readings for short ranges, and exact statistics
/// over any period from the coarsest windows that fit inside it.
/// </summary>
public sealed class TrendReader(IRollupStore rollups, IRawSeriesStore rawStore, IGrainFactory grains)
{
    /// <summary>The most windows one read may span, so every query stays bounded.</summary>
    public const int MaxWindows = 10_080;

    /// <summary>The most raw readings one read returns.</summary>
    public const int MaxRawReadings = 20_000;

    /// <summary>
    /// The longest range raw readings are read over at once (as long as a 1-minute trend's): the readings of all
    /// patients in a range are read to find one patient's, so a range of months would cost a scan of months.
    /// </summary>
    public static readonly TimeSpan MaxRawRange = TimeSpan.FromDays(7);

    private static readonly Resolution[] Coarsest = [Resolution.Day, Resolution.Hour, Resolution.Minute];

    /// <summary>
    /// The windows of <paramref name="kind"/> at <paramref name="resolution"/> that start in
    /// [window start of <paramref name="fromMs"/>, <paramref name="toMs"/>), oldest first, including the one still open.
    /// </summary>
    public async Task<IReadOnlyList<RollupWindow>> ReadWindowsAsync(
        string patientId, VitalKind kind, Resolution resolution, long fromMs, long toMs, CancellationToken cancellationToken = default)
    {
        var startMs = resolution.WindowStart(fromMs);

        // The grain first, then the store: a window the grain writes in between is in the store's answer, and one it
        // closed but has not written yet (or that the store may not show yet) is among the grain's recent windows.
        var recent = await grains.GetGrain<IPatientGrain>(patientId).GetRecentWindowsAsync(kind, resolution);
        var stored = await rollups.QueryAsync(patientId, kind, resolution, startMs, toMs, cancellationToken);
        var windows = default(Dictionary<long, RollupWindow>);
        foreach (var current in recent)
        {
            if (current.StartMs < startMs || current.StartMs >= toMs)
            {
                continue;
            }

            // Where both have a window of the same start, the one that has seen more readings is the fresher.
            windows ??= stored.ToDictionary(window => window.StartMs);
            if (!windows.TryGetValue(current.StartMs, out var checkpoint) || current.Count >= checkpoint.Count)
            {
                windows[current.StartMs] = current;
            }
        }

        return windows is null ? stored : [.. windows.Values.OrderBy(window => window.StartMs)];
    }

    /// <summary>The raw readings of <paramref name="kind"/> in [<paramref name="fromMs"/>, <paramref name="toMs"/>), oldest first, at most <paramref name="limit"/>.</summary>
    public Task<IReadOnlyList<StoredReading>> ReadRawAsync(
        string patientId, VitalKind kind, long fromMs, long toMs, int limit = MaxRawReadings, CancellationToken cancellationToken = default) =>
        rawStore.ReadAsync(patientId, kind, fromMs, toMs, limit, cancellationToken);

    /// <summary>
    /// The exact summary of every reading of <paramref name="kind"/> in [<paramref name="fromMs"/>, <paramref name="toMs"/>):
    /// whole days from 1-day windows, the hours and minutes at either edge from finer windows, and only the seconds at
    /// the very edges from raw readings. Null when there is no reading.
    /// </summary>
    public async Task<RollupWindow?> SummariseAsync(string patientId, VitalKind kind, long fromMs, long toMs, CancellationToken cancellationToken = default)
    {
        var pieces = new List<RollupWindow>();
        await CoverAsync(patientId, kind, fromMs, toMs, level: 0, pieces, cancellationToken);
        return pieces.Count == 0 ? null : Merge(fromMs, pieces);
    }

    /// <summary>Summarises <paramref name="windows"/> as one window starting at <paramref name="startMs"/>.</summary>
    public static RollupWindow Merge(long startMs, IEnumerable<RollupWindow> windows)
    {
        long count = 0, lastMs = long.MinValue;
        double sum = 0, sumOfSquares = 0, min = double.PositiveInfinity, max = double.NegativeInfinity, last = double.NaN;
        foreach (var window in windows)
        {
            count += window.Count;
            sum += window.Sum;
            sumOfSquares += window.SumOfSquares;
            min = Math.Min(min, window.Min);
            max = Math.Max(max, window.Max);
            if (window.LastMs >= lastMs)
            {
                (last, lastMs) = (window.Last, window.LastMs);
            }
        }

        return new RollupWindow(startMs, count, sum, min, max, sumOfSquares, last, lastMs);
    }

    /// <summary>A window that holds one reading.</summary>
    public static RollupWindow Single(long timestampMs, double value) =>
        new(timestampMs, 1, value, value, value, value * value, value, timestampMs);

    private async Task CoverAsync(string patientId, VitalKind kind, long fromMs, long toMs, int level, List<RollupWindow> pieces, CancellationToken cancellationToken)
    {
        if (fromMs >= toMs)
        {
            return;
        }

        if (level == Coarsest.Length)
        {
            // Less than a minute at one edge: summarise the raw readings themselves.
            var raw = await rawStore.AggregateAsync(patientId, fromMs, toMs, Resolution.Day, cancellationToken);
            pieces.AddRange(raw.Windows.Where(window => window.Kind == kind).Select(window => window.Window));
            return;
        }

        var resolution = Coarsest[level];
        var length = resolution.Milliseconds();
        var innerFrom = resolution.WindowStart(fromMs + length - 1);
        var innerTo = resolution.WindowStart(toMs);
        if (innerFrom >= innerTo)
        {
            await CoverAsync(patientId, kind, fromMs, toMs, level + 1, pieces, cancellationToken);
            return;
        }

        pieces.AddRange(await ReadWindowsAsync(patientId, kind, resolution, innerFrom, innerTo, cancellationToken));
        await CoverAsync(patientId, kind, fromMs, innerFrom, level + 1, pieces, cancellationToken);
        await CoverAsync(patientId, kind, innerTo, toMs, level + 1, pieces, cancellationToken);
    }
}
