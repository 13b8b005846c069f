namespace Telemetry.Ingest;

/// <summary>
/// An authenticated device and the patient it is bound to server-side, with when the credentials it signed in with
/// were issued: a connection whose device has newer credentials (or none) is out of date.
/// </summary>
public sealed record DeviceIdentity(string DeviceId, string PatientId, DateTimeOffset CredentialsIssuedAt);
