namespace Telemetry.Grains.Alerts;

/// <summary>
/// A threshold rule's reading that came alone (see <see cref="AlertState.Alone"/>): its time (as judged, on the server's
/// clock) and its value.
/// </summary>
[GenerateSerializer, Immutable]
public sealed record AloneReading(long AtMs, double Value);
