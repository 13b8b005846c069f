namespace Telemetry.Grains.Alerts;

/// <summary>
/// A threshold rule's reading that came alone (see <see cref="AlertState.Alone"/>): its time (as judged, on the server's
/// clock), its value, and when the sustain or recovery it began completes by the clock unless a reading breaks it.
/// </summary>
[GenerateSerializer, Immutable]
public sealed record AloneReading(long AtMs, double Value, long DueMs);
