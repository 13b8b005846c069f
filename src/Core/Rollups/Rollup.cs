using Telemetry.Core.Vitals;

namespace Telemetry.Core.Rollups;

/// <summary>A closed (or checkpointed) window of one patient's vital at one resolution, as the rollup store keeps it.</summary>
public sealed record Rollup(string PatientId, VitalKind Kind, Resolution Resolution, RollupWindow Window);
