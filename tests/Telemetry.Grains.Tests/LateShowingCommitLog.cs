using Telemetry.Core.Storage;

namespace Telemetry.Grains.Tests;

/// <summary>
/// The real DuckDB commit log, saying it shows commits whole only through <see cref="Shown"/>, as a series server's log
/// says of the commits made in the last while; the test moves it on as the store comes to show them.
/// </summary>
internal sealed class LateShowingCommitLog(ICommitLog log) : ICommitLog
{
    private long _shown;

    public long Shown
    {
        get => Volatile.Read(ref _shown);
        set => Volatile.Write(ref _shown, value);
    }

    public Task<CommitLogPosition> ReadPositionAsync(CancellationToken cancellationToken = default) => log.ReadPositionAsync(cancellationToken);

    public long ShownWholeThrough() => Math.Min(Shown, log.ShownWholeThrough());

    public Task SaveAppliedThroughAsync(long commitId, CancellationToken cancellationToken = default) => log.SaveAppliedThroughAsync(commitId, cancellationToken);

    public IAsyncEnumerable<PatientMinute> MinutesCommittedAsync(long afterCommitId, long throughCommitId, CancellationToken cancellationToken = default) =>
        log.MinutesCommittedAsync(afterCommitId, throughCommitId, cancellationToken);
}
