namespace Telemetry.Core.Storage;

/// <summary>
/// How far patient grains are known to have applied the raw store's commits, and its last commit. For a store that
/// shows a commit a while after answering it, <paramref name="ShownThrough"/> is the last commit it is sure to show
/// whole by now: a grain that activated since may have rebuilt without the applied commits after it. Otherwise it is
/// <paramref name="AppliedThrough"/>.
/// </summary>
public readonly record struct CommitLogPosition(long AppliedThrough, long LastCommitId, long ShownThrough)
{
    public CommitLogPosition(long appliedThrough, long lastCommitId)
        : this(appliedThrough, lastCommitId, appliedThrough)
    {
    }
}
