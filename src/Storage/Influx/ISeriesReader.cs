using Telemetry.Core.Rollups;
using Telemetry.Core.Storage;
using Telemetry.Core.Vitals;

namespace Telemetry.Storage.Influx;

/// <summary>How the series written as line protocol are read back: Flux for InfluxDB, the export API for VictoriaMetrics.</summary>
internal interface ISeriesReader : IDisposable
{
    /// <summary>
    /// The (vital, time) of every reading the device has stored in [<paramref name="fromMs"/>, <paramref name="toMs"/>), with its
    /// value, in <paramref name="measurement"/>: <see cref="InfluxLayout.Vitals"/>, or <see cref="InfluxLayout.Quarantine"/>
    /// for its quarantined readings. Under whichever patient: a device bound to another since sends again what it sent
    /// for the first, which is not stored twice (as DuckDB looks a device's readings up).
    /// </summary>
    Task<Dictionary<(VitalKind Kind, long TimestampMs), double>> ExistingAsync(
        string measurement, string deviceId, IReadOnlyCollection<VitalKind> kinds, long fromMs, long toMs, CancellationToken cancellationToken);

    Task<RawAggregate> AggregateAsync(string patientId, long fromMs, long toMs, Resolution resolution, CancellationToken cancellationToken);

    /// <summary>
    /// Makes every write the server has answered before this call searchable now, where the server can be asked to
    /// (VictoriaMetrics' <c>/internal/force_flush</c>); false when it could not be (not such a server, or the request
    /// failed: reads then rely on <see cref="SeriesServerOptions.ReadableAfter"/>, as they would anyway).
    /// </summary>
    Task<bool> ShowAnsweredWritesAsync(CancellationToken cancellationToken);

    /// <summary>
    /// What in the server's own settings would refuse, drop or double readings this server acknowledges (see
    /// <see cref="SeriesBackend.SettingsProblemsAsync"/>): empty when nothing, null when they could not be read.
    /// </summary>
    Task<IReadOnlyList<string>?> SettingsProblemsAsync(TimeSpan backfillHorizon, TimeSpan? rollupsKept, CancellationToken cancellationToken);

    Task<IReadOnlyList<QuarantinedReading>> ReadQuarantineAsync(string deviceId, int limit, CancellationToken cancellationToken);

    Task<IReadOnlyList<StoredReading>> ReadAsync(string patientId, VitalKind kind, long fromMs, long toMs, int limit, CancellationToken cancellationToken);

    Task<IReadOnlyList<StoredReading>> ReadLatestAsync(string patientId, IReadOnlyCollection<VitalKind> kinds, long fromMs, long toMs, int perKind, CancellationToken cancellationToken);

    IAsyncEnumerable<StoredReading> StreamAsync(string patientId, IReadOnlyCollection<VitalKind> kinds, long fromMs, long toMs, CancellationToken cancellationToken);

    Task<IReadOnlyList<RollupWindow>> ReadRollupsAsync(string patientId, VitalKind kind, Resolution resolution, long fromMs, long toMs, CancellationToken cancellationToken);

    /// <summary>
    /// Deletes the measurement's points before <paramref name="beforeMs"/> (of one resolution, for rollups); false when the
    /// server keeps its own retention instead.
    /// </summary>
    Task<bool> DeleteBeforeAsync(string measurement, Resolution? resolution, long beforeMs, CancellationToken cancellationToken);
}
