using Telemetry.Core.Rollups;
using Telemetry.Core.Vitals;

namespace Telemetry.Core.Grains;

/// <summary>The latest reading of one vital and the minute window it falls in.</summary>
[GenerateSerializer, Immutable]
public sealed record LiveVital(VitalKind Kind, double Value, long TimestampMs, RollupWindow CurrentMinute);
