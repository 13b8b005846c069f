using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using Telemetry.Core.Readings;
using Telemetry.Core.Rollups;
using Telemetry.Core.Storage;
using Telemetry.Core.Vitals;
using Telemetry.Storage.DuckDb;

namespace Telemetry.Grains.Tests;

/// <summary>
/// The real DuckDB store, declared to show a commit only a while after answering it, as a time-series server does. A
/// test commits part of a commit's readings, lets the grain read the store, and commits the rest later: the store
/// showing a commit a piece at a time, at the moments the test chooses. Or it hides a patient's vital for a while
/// (<see cref="Hide"/>): the store holds its readings, and shows them to no one until <see cref="ShowAll"/> (a series
/// server shows one series' samples before another's).
/// </summary>
internal sealed class LateShowingRawStore(DuckDbRawSeriesStore store) : IRawSeriesStore
{
    private readonly ConcurrentDictionary<(string PatientId, VitalKind Kind), bool> _hidden = new();

    public TimeSpan ReadableAfter => TimeSpan.FromSeconds(15);

    /// <summary>Shows none of <paramref name="patientId"/>'s readings of <paramref name="kind"/> until <see cref="ShowAll"/>.</summary>
    public void Hide(string patientId, VitalKind kind) => _hidden[(patientId, kind)] = true;

    public void ShowAll() => _hidden.Clear();

    /// <summary>Run as each aggregate read returns, with the patient's id: what it does the read did not see, and reads after it do.</summary>
    public Action<string>? AfterAggregate { get; set; }

    /// <summary>Run (once) when the store is asked to show every write it answered (<see cref="ShowAnsweredWritesAsync"/>): what it commits, reads after it see.</summary>
    public Action? OnShowAnsweredWrites { get; set; }

    private bool Shows(string patientId, VitalKind kind) => !_hidden.ContainsKey((patientId, kind));

    public Task ShowAnsweredWritesAsync(CancellationToken cancellationToken = default)
    {
        // Once: the writes it shows are shown from then on.
        var show = OnShowAnsweredWrites;
        OnShowAnsweredWrites = null;
        show?.Invoke();
        return Task.CompletedTask;
    }

    public ValueTask<long> CommitAsync(IReadOnlyList<DeviceBatch> batches, Memory<BatchOutcome> outcomes, CancellationToken cancellationToken = default) =>
        store.CommitAsync(batches, outcomes, cancellationToken);

    public async Task<RawAggregate> AggregateAsync(string patientId, long fromMs, long toMs, Resolution resolution, CancellationToken cancellationToken = default)
    {
        var aggregate = await store.AggregateAsync(patientId, fromMs, toMs, resolution, cancellationToken);
        AfterAggregate?.Invoke(patientId);
        return aggregate with { Windows = [.. aggregate.Windows.Where(window => Shows(patientId, window.Kind))] };
    }

    public Task<IReadOnlyList<QuarantinedReading>> ReadQuarantineAsync(string deviceId, int limit, CancellationToken cancellationToken = default) =>
        store.ReadQuarantineAsync(deviceId, limit, cancellationToken);

    public async Task<IReadOnlyList<StoredReading>> ReadAsync(string patientId, VitalKind kind, long fromMs, long toMs, int limit, CancellationToken cancellationToken = default) =>
        Shows(patientId, kind) ? await store.ReadAsync(patientId, kind, fromMs, toMs, limit, cancellationToken) : [];

    public async Task<IReadOnlyList<StoredReading>> ReadLatestAsync(string patientId, IReadOnlyCollection<VitalKind> kinds, long fromMs, long toMs, int perKind, CancellationToken cancellationToken = default) =>
        [.. (await store.ReadLatestAsync(patientId, kinds, fromMs, toMs, perKind, cancellationToken)).Where(reading => Shows(patientId, reading.Kind))];

    public async IAsyncEnumerable<StoredReading> StreamAsync(
        string patientId, IReadOnlyCollection<VitalKind> kinds, long fromMs, long toMs, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        await foreach (var reading in store.StreamAsync(patientId, kinds, fromMs, toMs, cancellationToken))
        {
            if (Shows(patientId, reading.Kind))
            {
                yield return reading;
            }
        }
    }

    public Task<long> DeleteBeforeAsync(long beforeMs, CancellationToken cancellationToken = default) => store.DeleteBeforeAsync(beforeMs, cancellationToken);
}
