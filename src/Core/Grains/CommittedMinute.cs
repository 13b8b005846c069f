using Telemetry.Core.Vitals;

namespace Telemetry.Core.Grains;

/// <summary>
/// A minute of one vital in which commits stored readings, with the lowest and highest of those commits: what a patient
/// grain is told to recompute when it may never have been handed those readings.
/// </summary>
[GenerateSerializer, Immutable]
public readonly record struct CommittedMinute(VitalKind Kind, long MinuteStartMs, long FirstCommitId, long LastCommitId);
