using Telemetry.Core.Readings;
using Telemetry.Core.Rollups;
using Telemetry.Core.Vitals;

namespace Telemetry.Core.Storage;

/// <summary>The raw series: every accepted reading as (patient, device, kind, time, value), committed durably before any ack.</summary>
public interface IRawSeriesStore
{
    /// <summary>
    /// How long after answering a commit the store may take to show all of it to reads. Zero when a commit becomes
    /// readable all at once, and commit ids increase in the order commits become readable. Otherwise (a time-series
    /// server written in several requests, or searchable a while after its answer) what a grain rebuilt around the time
    /// of a commit is recomputed from the store when its windows close, and late windows a grain recomputed at once,
    /// and repairs, wait this long.
    /// </summary>
    TimeSpan ReadableAfter => TimeSpan.Zero;

    /// <summary>
    /// Makes every commit answered before this call readable now, where the store can be asked to (VictoriaMetrics);
    /// elsewhere nothing (a store that shows writes at once, or one whose reads wait out <see cref="ReadableAfter"/>).
    /// A grain asks before it rebuilds.
    /// </summary>
    Task ShowAnsweredWritesAsync(CancellationToken cancellationToken = default) => Task.CompletedTask;

    /// <summary>
    /// Durably commits <paramref name="batches"/> in one transaction (group commit) and says for each what was stored: a
    /// batch whose sequence number the device already committed stores nothing, and a reading the device already sent
    /// (same vital and time) is stored once. Returns the commit's id, which increases with every commit that stores
    /// readings. Throws when nothing could be committed. Called from one thread at a time.
    /// </summary>
    ValueTask<long> CommitAsync(IReadOnlyList<DeviceBatch> batches, Memory<BatchOutcome> outcomes, CancellationToken cancellationToken = default);

    /// <summary>The patient's readings in [<paramref name="fromMs"/>, <paramref name="toMs"/>) summarised per vital and window of <paramref name="resolution"/>.</summary>
    Task<RawAggregate> AggregateAsync(string patientId, long fromMs, long toMs, Resolution resolution, CancellationToken cancellationToken = default);

    /// <summary>The device's latest quarantined readings (refused as implausible, stored apart), newest first.</summary>
    Task<IReadOnlyList<QuarantinedReading>> ReadQuarantineAsync(string deviceId, int limit, CancellationToken cancellationToken = default);

    /// <summary>The patient's raw readings of <paramref name="kind"/> in [<paramref name="fromMs"/>, <paramref name="toMs"/>), oldest first, at most <paramref name="limit"/>.</summary>
    Task<IReadOnlyList<StoredReading>> ReadAsync(string patientId, VitalKind kind, long fromMs, long toMs, int limit, CancellationToken cancellationToken = default);

    /// <summary>The patient's newest <paramref name="perKind"/> readings of each of <paramref name="kinds"/> in [<paramref name="fromMs"/>, <paramref name="toMs"/>), newest first within each kind.</summary>
    Task<IReadOnlyList<StoredReading>> ReadLatestAsync(string patientId, IReadOnlyCollection<VitalKind> kinds, long fromMs, long toMs, int perKind, CancellationToken cancellationToken = default);

    /// <summary>
    /// Streams the patient's readings of <paramref name="kinds"/> in [<paramref name="fromMs"/>, <paramref name="toMs"/>) in time order,
    /// without holding them all in memory (for exports).
    /// </summary>
    IAsyncEnumerable<StoredReading> StreamAsync(string patientId, IReadOnlyCollection<VitalKind> kinds, long fromMs, long toMs, CancellationToken cancellationToken = default);

    /// <summary>Deletes raw and quarantined readings older than <paramref name="beforeMs"/>; returns how many went, or -1 when the store does not say.</summary>
    Task<long> DeleteBeforeAsync(long beforeMs, CancellationToken cancellationToken = default);
}
