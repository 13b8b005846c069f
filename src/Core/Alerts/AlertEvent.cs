namespace Telemetry.Core.Alerts;

/// <summary>
/// Something that happened to an alert, with the alert as it stands after it. <see cref="Seq"/> numbers a patient's
/// events (so a resent event is recognised); <see cref="Position"/> orders all patients' events once stored.
/// </summary>
[GenerateSerializer, Immutable]
public sealed record AlertEvent(string PatientId, long Seq, AlertEventType Type, DateTimeOffset At, Alert Alert)
{
    /// <summary>The store's position of the event across all patients; zero until stored.</summary>
    [Id(5)]
    public long Position { get; init; }

    /// <summary>The event's stable id: the patient id and the patient's event number.</summary>
    public string EventId => $"{PatientId}/{Seq}";
}
