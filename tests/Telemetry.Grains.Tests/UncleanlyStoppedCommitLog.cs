using Telemetry.Core.Storage;
using Telemetry.Storage.DuckDb;

namespace Telemetry.Grains.Tests;

/// <summary>
/// The real DuckDB commit log, saying the server before stopped uncleanly: the minutes it reports as left open are those
/// the log reads after such a stop (see <see cref="DuckDbCommitLog.LastMinutesOfLastDaysAsync"/>).
/// </summary>
internal sealed class UncleanlyStoppedCommitLog(DuckDbCommitLog log) : ICommitLog
{
    private volatile bool _recovered;

    /// <summary>Whether the repair reported the windows left open recovered.</summary>
    public bool Recovered => _recovered;

    public Task<CommitLogPosition> ReadPositionAsync(CancellationToken cancellationToken = default) => log.ReadPositionAsync(cancellationToken);

    public long ShownWholeThrough() => log.ShownWholeThrough();

    public Task SaveAppliedThroughAsync(long commitId, CancellationToken cancellationToken = default) => log.SaveAppliedThroughAsync(commitId, cancellationToken);

    public IAsyncEnumerable<PatientMinute> MinutesCommittedAsync(long afterCommitId, long throughCommitId, CancellationToken cancellationToken = default) =>
        log.MinutesCommittedAsync(afterCommitId, throughCommitId, cancellationToken);

    public Task<IReadOnlyList<PatientMinute>> MinutesOpenAtStopAsync(CancellationToken cancellationToken = default) => log.LastMinutesOfLastDaysAsync(cancellationToken: cancellationToken);

    public void OpenWindowsRecovered() => _recovered = true;
}
