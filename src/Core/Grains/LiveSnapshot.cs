namespace Telemetry.Core.Grains;

/// <summary>What a patient's grain knows right now, one entry per vital seen.</summary>
[GenerateSerializer, Immutable]
public sealed record LiveSnapshot(string PatientId, LiveVital[] Vitals);
