using Telemetry.Core.Readings;
using Telemetry.Storage.DuckDb;

namespace Telemetry.Storage.Tests.DuckDb;

/// <summary>Device batches as the commit pipeline hands them to the raw store.</summary>
internal static class Batches
{
    /// <summary>2026-11-24T10:00:00Z, the start of a minute, hour and day.</summary>
    public static readonly long T0 = new DateTimeOffset(2026, 11, 24, 0, 0, 0, TimeSpan.Zero).ToUnixTimeMilliseconds() + 36_000_000;

    public static DeviceBatch Of(string deviceId, string patientId, ulong sequence, params VitalReading[] readings) =>
        new(deviceId, patientId, sequence, readings);

    public static (long CommitId, CommitOutcome[] Outcomes, BatchOutcome[] Batches) Commit(this DuckDbRawSeriesStore store, params DeviceBatch[] batches)
    {
        var outcomes = new BatchOutcome[batches.Length];
        var commitId = store.Commit(batches, outcomes);
        return (commitId, [.. outcomes.Select(outcome => outcome.Outcome)], outcomes);
    }
}
