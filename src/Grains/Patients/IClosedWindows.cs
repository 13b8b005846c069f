using Telemetry.Core.Rollups;
using Telemetry.Core.Vitals;

namespace Telemetry.Grains.Patients;

/// <summary>Takes the windows a vital's <see cref="VitalWindows"/> close as readings fold in.</summary>
internal interface IClosedWindows
{
    void Add(VitalKind kind, Resolution resolution, RollupWindow window);
}
