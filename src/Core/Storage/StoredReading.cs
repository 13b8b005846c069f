using Telemetry.Core.Vitals;

namespace Telemetry.Core.Storage;

/// <summary>A reading as the raw store holds it: which device sent it, the vital, when, and its value in the canonical unit.</summary>
public readonly record struct StoredReading(string DeviceId, VitalKind Kind, long TimestampMs, double Value);
