using Telemetry.Core.Rollups;
using Telemetry.Core.Storage;

namespace Telemetry.Storage.DuckDb;

/// <summary>
/// Patients' aggregates over a span, read together when asked for together (see
/// <see cref="CoalescedReads{TGroup, TResult}"/>). A patient's aggregate scans every reading of the span (the readings of
/// all patients are interleaved in the files, so a patient's rows cannot be skipped to), and patient grains ask for the
/// same span, yesterday and today, when they activate: read one by one, each activation would scan those two days again.
/// A patient without readings in the span gets an empty aggregate.
/// </summary>
internal sealed class AggregateReads(Func<IReadOnlyList<string>, long, long, Resolution, IReadOnlyDictionary<string, RawAggregate>> read)
    : CoalescedReads<AggregateReads.Span, RawAggregate>((patients, span) => read(patients, span.FromMs, span.ToMs, span.Resolution), Nothing, MaxPatientsPerRead)
{
    /// <summary>The most patients one query reads for (two days of minute windows are about a megabyte a patient).</summary>
    public const int MaxPatientsPerRead = 64;

    private static readonly RawAggregate Nothing = new([], 0);

    public Task<RawAggregate> ReadAsync(string patientId, long fromMs, long toMs, Resolution resolution, CancellationToken cancellationToken) =>
        ReadAsync(patientId, new Span(fromMs, toMs, resolution), cancellationToken);

    internal readonly record struct Span(long FromMs, long ToMs, Resolution Resolution);
}
