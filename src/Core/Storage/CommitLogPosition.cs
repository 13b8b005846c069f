namespace Telemetry.Core.Storage;

/// <summary>How far patient grains are known to have applied the raw store's commits, and its last commit.</summary>
public readonly record struct CommitLogPosition(long AppliedThrough, long LastCommitId);
