namespace Telemetry.Ingest;

/// <summary>The device registry could not answer a sign-in; the device should try again shortly.</summary>
public sealed class DeviceRegistryUnavailableException(Exception inner)
    : Exception("The device registry is unavailable; try again shortly.", inner);
