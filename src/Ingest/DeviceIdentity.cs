namespace Telemetry.Ingest;

/// <summary>An authenticated device and the patient it is bound to server-side.</summary>
public sealed record DeviceIdentity(string DeviceId, string PatientId);
