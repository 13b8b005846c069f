namespace Telemetry.Core.Readings;

/// <summary>
/// A patient's committed readings from one ingest flush: the argument of the one grain call per patient per flush.
/// <see cref="CommitId"/> is the raw store's number for the commit that stored them. <see cref="Implausible"/> are the
/// readings the same batches had quarantined as implausible: never part of the series, but a sign of a faulty sensor.
/// </summary>
[GenerateSerializer, Immutable]
public sealed record PatientReadings(long CommitId, VitalReading[] Readings, VitalReading[]? Implausible = null)
{
    /// <summary>
    /// When the earliest of the batches these readings came in was handed to the ingest pipeline (before its commit),
    /// if known: what an alert these readings raise or clear is timed from (<c>telemetry_alerts_delay_seconds</c>).
    /// </summary>
    [Id(3)]
    public DateTimeOffset? HandedOverAt { get; init; }
}
