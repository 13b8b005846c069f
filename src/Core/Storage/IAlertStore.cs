using Telemetry.Core.Alerts;

namespace Telemetry.Core.Storage;

/// <summary>
/// Alert history: every event of every alert, in the order stored, and each alert as it stands now. Appending is
/// idempotent by (patient, event number), so a patient's grain may hand the same events over again after a crash.
/// </summary>
public interface IAlertStore
{
    /// <summary>
    /// Stores the events not stored before and returns every one of them with its position; one from before the history
    /// kept (see <see cref="DeleteBeforeAsync"/>) that is not in it is neither stored again nor returned.
    /// </summary>
    Task<IReadOnlyList<AlertEvent>> AppendAsync(IReadOnlyList<AlertEvent> events, CancellationToken cancellationToken = default);

    /// <summary>Events after <paramref name="afterPosition"/> in stored order, of one patient or (when null) of all, at most <paramref name="limit"/>.</summary>
    Task<IReadOnlyList<AlertEvent>> ReadEventsAsync(long afterPosition, string? patientId, int limit, CancellationToken cancellationToken = default);

    /// <summary>The position of the latest stored event; zero when there is none.</summary>
    Task<long> LastPositionAsync(CancellationToken cancellationToken = default);

    /// <summary>Alerts as they stand, newest first: of one patient or all, raised in [<paramref name="from"/>, <paramref name="to"/>), optionally only open ones.</summary>
    Task<IReadOnlyList<Alert>> QueryAsync(AlertQuery query, CancellationToken cancellationToken = default);

    /// <summary>The alert as it stands, or null when there is no such alert.</summary>
    Task<Alert?> GetAsync(string alertId, CancellationToken cancellationToken = default);

    /// <summary>
    /// Deletes the history older than <paramref name="cutoff"/> (retention): events that happened before it, and alerts
    /// no longer open that were raised and cleared before it. An open alert stays however old it is, and positions never go back: a
    /// consumer's cursor stays valid. Returns how many events and alerts went.
    /// </summary>
    Task<long> DeleteBeforeAsync(DateTimeOffset cutoff, CancellationToken cancellationToken = default);

    /// <summary>Marks whether a patient has alert rules, so the patient's timers are started again when the server starts.</summary>
    Task SetWatchedAsync(string patientId, bool watched, CancellationToken cancellationToken = default);

    /// <summary>Every patient with alert rules.</summary>
    Task<IReadOnlyList<string>> WatchedPatientsAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// How far a named consumer (a webhook) has delivered: the last position it took; null when it has never started
    /// (zero is a position it can stand at: before the first event of an empty log).
    /// </summary>
    Task<long?> ReadCursorAsync(string consumer, CancellationToken cancellationToken = default);

    Task WriteCursorAsync(string consumer, long position, CancellationToken cancellationToken = default);
}
