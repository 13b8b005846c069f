using Telemetry.Core.Readings;
using Telemetry.Core.Rollups;
using Telemetry.Core.Storage;
using Telemetry.Core.Vitals;
using Telemetry.Storage.DuckDb;

namespace Telemetry.Grains.Tests;

/// <summary>
/// The real DuckDB store, declared to show a commit only a while after answering it, as a time-series server does. A
/// test commits part of a commit's readings, lets the grain read the store, and commits the rest later: the store
/// showing a commit a piece at a time, at the moments the test chooses.
/// </summary>
internal sealed class LateShowingRawStore(DuckDbRawSeriesStore store) : IRawSeriesStore
{
    public TimeSpan ReadableAfter => TimeSpan.FromSeconds(15);

    public ValueTask<long> CommitAsync(IReadOnlyList<DeviceBatch> batches, Memory<BatchOutcome> outcomes, CancellationToken cancellationToken = default) =>
        store.CommitAsync(batches, outcomes, cancellationToken);

    public Task<RawAggregate> AggregateAsync(string patientId, long fromMs, long toMs, Resolution resolution, CancellationToken cancellationToken = default) =>
        store.AggregateAsync(patientId, fromMs, toMs, resolution, cancellationToken);

    public Task<IReadOnlyList<QuarantinedReading>> ReadQuarantineAsync(string deviceId, int limit, CancellationToken cancellationToken = default) =>
        store.ReadQuarantineAsync(deviceId, limit, cancellationToken);

    public Task<IReadOnlyList<StoredReading>> ReadAsync(string patientId, VitalKind kind, long fromMs, long toMs, int limit, CancellationToken cancellationToken = default) =>
        store.ReadAsync(patientId, kind, fromMs, toMs, limit, cancellationToken);

    public Task<IReadOnlyList<StoredReading>> ReadLatestAsync(string patientId, IReadOnlyCollection<VitalKind> kinds, long fromMs, long toMs, int perKind, CancellationToken cancellationToken = default) =>
        store.ReadLatestAsync(patientId, kinds, fromMs, toMs, perKind, cancellationToken);

    public IAsyncEnumerable<StoredReading> StreamAsync(string patientId, IReadOnlyCollection<VitalKind> kinds, long fromMs, long toMs, CancellationToken cancellationToken = default) =>
        store.StreamAsync(patientId, kinds, fromMs, toMs, cancellationToken);

    public Task<long> DeleteBeforeAsync(long beforeMs, CancellationToken cancellationToken = default) => store.DeleteBeforeAsync(beforeMs, cancellationToken);
}
