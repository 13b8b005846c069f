namespace Telemetry.Core.Readings;

/// <summary>
/// Validated readings from one device, bound to the patient the device belongs to, ready to commit.
/// <see cref="Sequence"/> is the device's batch number; zero means the batch has none.
/// </summary>
public sealed record DeviceBatch(string DeviceId, string PatientId, ulong Sequence, ReadOnlyMemory<VitalReading> Readings)
{
    /// <summary>Readings refused as implausible, stored apart in quarantine with the batch and never part of the patient's series.</summary>
    public ReadOnlyMemory<VitalReading> Quarantined { get; init; } = ReadOnlyMemory<VitalReading>.Empty;
}
