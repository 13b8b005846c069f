using System.Text;
using Telemetry.Core.Rollups;
using Telemetry.Core.Storage;
using Telemetry.Core.Vitals;

namespace Telemetry.Storage.Influx;

/// <summary>
/// Rollups kept beside the raw series in the time-series server (measurement <c>rollups</c>, one point per window at its
/// start, or by time of writing where the server does not replace points), so every node of a cluster writes and
/// reads the same ones. Writing a window again replaces it.
/// </summary>
public sealed class SeriesRollupStore(SeriesBackend backend, TimeProvider timeProvider) : IRollupStore
{
    /// <summary>
    /// The most series whose last time of writing is remembered; past it, those whose time the clock has passed are
    /// forgotten (the clock's time is later than theirs anyway), and only if none has, all.
    /// </summary>
    internal const int MaxRemembered = 100_000;

    private readonly Dictionary<(string PatientId, VitalKind Kind, Resolution Resolution), long> _lastWrittenAtMs = [];

    public async Task WriteAsync(IReadOnlyCollection<Rollup> rollups, CancellationToken cancellationToken = default)
    {
        if (rollups.Count == 0)
        {
            return;
        }

        var chunks = new List<string>();
        var lines = new StringBuilder();
        var count = 0;
        foreach (var rollup in rollups)
        {
            InfluxLayout.AppendRollup(lines, rollup, backend.VersionedRollups ? NextWriteTime(rollup) : null);
            if (++count == InfluxRawSeriesStore.MaxLinesPerWrite)
            {
                chunks.Add(lines.ToString());
                lines.Clear();
                count = 0;
            }
        }

        if (count > 0)
        {
            chunks.Add(lines.ToString());
        }

        await backend.Writer.WriteAsync(chunks, cancellationToken);
    }

    /// <summary>
    /// A time of writing for the rollup's series later than any this store gave it, and not before the window's start,
    /// and otherwise the clock's: a
    /// patient's grain lives on one server at a time, and the times stay with the clock however many windows a grain
    /// writes at once (each series gets one per window, from now on).
    /// </summary>
    internal long NextWriteTime(Rollup rollup)
    {
        var now = timeProvider.GetUtcNow().ToUnixTimeMilliseconds();
        lock (_lastWrittenAtMs)
        {
            if (_lastWrittenAtMs.Count >= MaxRemembered)
            {
                // A series whose time ran ahead of the clock (many windows written at once) keeps it: handed the clock's
                // time again, its next window would lose to an older one, or two windows share a time.
                foreach (var (series, lastMs) in _lastWrittenAtMs)
                {
                    if (lastMs < now)
                    {
                        _lastWrittenAtMs.Remove(series);
                    }
                }

                if (_lastWrittenAtMs.Count >= MaxRemembered)
                {
                    _lastWrittenAtMs.Clear();
                }
            }

            // Never before the window's start (a device whose clock runs ahead closes windows the server's clock has not
            // reached): a read from a time finds the windows starting then, by their times of writing.
            var key = (rollup.PatientId, rollup.Kind, rollup.Resolution);
            var next = Math.Max(_lastWrittenAtMs.TryGetValue(key, out var last) ? Math.Max(last + 1, now) : now, rollup.Window.StartMs);
            _lastWrittenAtMs[key] = next;
            return next;
        }
    }

    public Task<IReadOnlyList<RollupWindow>> QueryAsync(string patientId, VitalKind kind, Resolution resolution, long fromMs, long toMs, CancellationToken cancellationToken = default) =>
        backend.Reader.ReadRollupsAsync(patientId, kind, resolution, fromMs, toMs, cancellationToken);

    /// <summary>Deletes through the server's delete API (VictoriaMetrics keeps its own retention); the server does not say how many went (-1).</summary>
    public async Task<long> DeleteBeforeAsync(Resolution resolution, long beforeMs, CancellationToken cancellationToken = default)
    {
        await backend.Reader.DeleteBeforeAsync(InfluxLayout.Rollups, resolution, beforeMs, cancellationToken);
        return -1;
    }
}
