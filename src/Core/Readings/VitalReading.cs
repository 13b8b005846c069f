using Telemetry.Core.Vitals;

namespace Telemetry.Core.Readings;

/// <summary>One validated reading in its canonical unit; the patient and device are carried by the batch around it.</summary>
[GenerateSerializer, Immutable]
public readonly record struct VitalReading(VitalKind Kind, long TimestampMs, double Value);
