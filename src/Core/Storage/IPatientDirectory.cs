namespace Telemetry.Core.Storage;

/// <summary>
/// The patients the service knows: those with a provisioned device, a care team, or alert rules. What a dashboard
/// lists; which of them a person may see is decided by their access, not here.
/// </summary>
public interface IPatientDirectory
{
    /// <summary>Records that <paramref name="patientId"/> exists (a device was provisioned for them); idempotent.</summary>
    Task RegisterAsync(string patientId, CancellationToken cancellationToken = default);

    /// <summary>Whether <paramref name="patientId"/> is known (as <see cref="ListAsync"/> would list them).</summary>
    Task<bool> ContainsAsync(string patientId, CancellationToken cancellationToken = default);

    /// <summary>Known patients in id order, at most <paramref name="limit"/>, after <paramref name="after"/> when given.</summary>
    Task<IReadOnlyList<string>> ListAsync(int limit, string? after = null, CancellationToken cancellationToken = default);
}
