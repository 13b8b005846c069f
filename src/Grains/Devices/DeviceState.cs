namespace Telemetry.Grains.Devices;

/// <summary>The persisted binding of a device: its patient and a salted hash of its secret, never the secret.</summary>
[GenerateSerializer]
public sealed class DeviceState
{
    [Id(0)]
    public string? PatientId { get; set; }

    [Id(1)]
    public byte[] Salt { get; set; } = [];

    [Id(2)]
    public byte[] SecretHash { get; set; } = [];

    [Id(3)]
    public DateTimeOffset ProvisionedAt { get; set; }

    /// <summary>When the device's token was revoked; null while it is valid. A new token makes it valid again.</summary>
    [Id(4)]
    public DateTimeOffset? RevokedAt { get; set; }

    /// <summary>When the device last got a new token.</summary>
    [Id(5)]
    public DateTimeOffset? RotatedAt { get; set; }
}
