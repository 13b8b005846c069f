using Telemetry.Core.Rollups;
using Telemetry.Core.Vitals;

namespace Telemetry.Core.Storage;

/// <summary>A window of one vital.</summary>
public readonly record struct KindWindow(VitalKind Kind, RollupWindow Window);
