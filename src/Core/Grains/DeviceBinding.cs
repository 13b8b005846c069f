namespace Telemetry.Core.Grains;

/// <summary>What may be said about a provisioned device: never its secret.</summary>
[GenerateSerializer, Immutable]
public sealed record DeviceBinding(
    string DeviceId, string PatientId, DateTimeOffset ProvisionedAt, DateTimeOffset? RotatedAt = null, DateTimeOffset? RevokedAt = null);
