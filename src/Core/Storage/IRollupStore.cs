using Telemetry.Core.Rollups;
using Telemetry.Core.Vitals;

namespace Telemetry.Core.Storage;

/// <summary>Rollups at 1 minute, 1 hour and 1 day, written by patient grains as windows close. A write replaces the window of the same start.</summary>
public interface IRollupStore
{
    Task WriteAsync(IReadOnlyCollection<Rollup> rollups, CancellationToken cancellationToken = default);

    /// <summary>The patient's windows of <paramref name="kind"/> at <paramref name="resolution"/> starting in [<paramref name="fromMs"/>, <paramref name="toMs"/>), oldest first.</summary>
    Task<IReadOnlyList<RollupWindow>> QueryAsync(string patientId, VitalKind kind, Resolution resolution, long fromMs, long toMs, CancellationToken cancellationToken = default);

    /// <summary>Deletes the windows of <paramref name="resolution"/> that start before <paramref name="beforeMs"/>; returns how many went.</summary>
    Task<long> DeleteBeforeAsync(Resolution resolution, long beforeMs, CancellationToken cancellationToken = default);
}
