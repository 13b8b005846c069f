using Telemetry.Core.Grains;

namespace Telemetry.Core.Storage;

/// <summary>
/// A raw store that numbers its commits durably, in order, can say which minutes later commits stored readings in. With
/// a durable mark of how far patient grains are known to have applied the commits, that lets the ingest pipeline make
/// the grains' windows and rollups whole after a crash (a commit acknowledged, its grain call lost) or a failed call.
/// </summary>
public interface ICommitLog
{
    /// <summary>
    /// Where the log stands: the commit through which grains were last recorded to have applied every commit, and the
    /// last commit. A log that has no mark yet (a new file, or one from before the mark) takes the last commit as it.
    /// </summary>
    Task<CommitLogPosition> ReadPositionAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// The last commit the store is sure to show whole by now, so that a grain rebuilding now reads all of it and of
    /// every commit before it: any commit for the embedded store; one made a while ago for a server that shows a commit
    /// a while after answering it.
    /// </summary>
    long ShownWholeThrough();

    /// <summary>Records that grains have applied every commit through <paramref name="commitId"/>.</summary>
    Task SaveAppliedThroughAsync(long commitId, CancellationToken cancellationToken = default);

    /// <summary>
    /// The minutes, per patient and vital, holding readings of the commits in (<paramref name="afterCommitId"/>,
    /// <paramref name="throughCommitId"/>], ordered by patient: streamed, however many there are.
    /// </summary>
    IAsyncEnumerable<PatientMinute> MinutesCommittedAsync(long afterCommitId, long throughCommitId, CancellationToken cancellationToken = default);

    /// <summary>
    /// After a stop that was not clean (the process killed, the machine lost): for each patient and vital with readings
    /// in the last two days that have any, the last minute holding one on each of those days. The grains held those
    /// days' open windows (the minute, hour and day still filling) in memory only, and an activation rebuilds only
    /// yesterday and today: recomputed from these minutes, none is lost however long the patient, or the server, stays
    /// silent. Empty after a clean stop, and from a log that cannot tell.
    /// </summary>
    Task<IReadOnlyList<PatientMinute>> MinutesOpenAtStopAsync(CancellationToken cancellationToken = default) =>
        Task.FromResult<IReadOnlyList<PatientMinute>>([]);

    /// <summary>Records that the windows over <see cref="MinutesOpenAtStopAsync"/> were recomputed, so that a clean stop from here on is one.</summary>
    void OpenWindowsRecovered()
    {
    }

    /// <summary>
    /// Records that the server stops with grains whose open windows were not written (its shutdown timeout cut their
    /// deactivation short, or the write failed): the next start recovers them as after a stop that was not clean.
    /// </summary>
    void OpenWindowsLeft()
    {
    }
}
