namespace Telemetry.Core.Storage;

/// <summary>
/// Where every read of a patient's data is recorded (the audit log): who read it, in what role, which patient, what
/// was asked, and the answer's status (HTTP's: 200 read, 403 denied, ...). A record that cannot be written fails what
/// asked for it: nothing is read unrecorded.
/// </summary>
public interface IAuditTrail
{
    Task RecordAsync(string actor, string role, string? patientId, string action, int status, CancellationToken cancellationToken = default);
}
