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
    private long _lastWrittenAtMs;

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
            InfluxLayout.AppendRollup(lines, rollup, backend.VersionedRollups ? NextWriteTime() : null);
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

    /// <summary>A time of writing no earlier write of this store had: a patient's grain lives on one server at a time, so its series' times do not collide.</summary>
    private long NextWriteTime()
    {
        var now = timeProvider.GetUtcNow().ToUnixTimeMilliseconds();
        long last, next;
        do
        {
            last = Interlocked.Read(ref _lastWrittenAtMs);
            next = Math.Max(last + 1, now);
        }
        while (Interlocked.CompareExchange(ref _lastWrittenAtMs, next, last) != last);
        return next;
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
