using Telemetry.Core.Rollups;
using Telemetry.Core.Storage;
using Telemetry.Core.Vitals;
using Telemetry.Storage.DuckDb;

namespace Telemetry.Grains.Tests;

/// <summary>
/// The real DuckDB rollup store, which refuses a patient's writes while a test says so (a store that is away, a disk
/// that is full): what a grain does when a write of its windows fails, and whether it writes them once it can.
/// </summary>
internal sealed class RefusingRollupStore(DuckDbRollupStore store) : IRollupStore
{
    private volatile string? _refused;
    private int _refusals;

    /// <summary>How many writes have been refused.</summary>
    public int Refusals => Volatile.Read(ref _refusals);

    /// <summary>Refuses every write holding a window of <paramref name="patientId"/> (null: refuses none).</summary>
    public void Refuse(string? patientId) => _refused = patientId;

    public Task WriteAsync(IReadOnlyCollection<Rollup> rollups, CancellationToken cancellationToken = default)
    {
        if (_refused is { } patient && rollups.Any(rollup => rollup.PatientId == patient))
        {
            Interlocked.Increment(ref _refusals);
            return Task.FromException(new IOException($"The rollup store refuses {patient}'s windows for this test."));
        }

        return store.WriteAsync(rollups, cancellationToken);
    }

    public Task<IReadOnlyList<RollupWindow>> QueryAsync(string patientId, VitalKind kind, Resolution resolution, long fromMs, long toMs, CancellationToken cancellationToken = default) =>
        store.QueryAsync(patientId, kind, resolution, fromMs, toMs, cancellationToken);

    public Task<long> DeleteBeforeAsync(Resolution resolution, long beforeMs, CancellationToken cancellationToken = default) =>
        store.DeleteBeforeAsync(resolution, beforeMs, cancellationToken);
}
