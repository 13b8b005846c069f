namespace Telemetry.Core.Alerts;

/// <summary>
/// Grain state that carries the alert events it produced, to be stored in the alert log after it (an outbox). A grain
/// storage that keeps the alert log in the same database may store them in the state's own transaction; the grain's
/// <see cref="Storage.IAlertStore.AppendAsync"/> then finds them stored, as it finds events handed over again.
/// </summary>
public interface IAlertOutbox
{
    /// <summary>The events written with this state and not yet known to be in the alert store, oldest first.</summary>
    IReadOnlyList<AlertEvent> PendingEvents { get; }
}
