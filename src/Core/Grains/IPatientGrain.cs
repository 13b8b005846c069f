using Orleans.Concurrency;
using Telemetry.Core.Readings;
using Telemetry.Core.Rollups;
using Telemetry.Core.Vitals;

namespace Telemetry.Core.Grains;

/// <summary>A patient's live picture: per-vital windows, rollups as windows close, the latest values. Keyed by patient id.</summary>
[Alias("telemetry.patient")]
public interface IPatientGrain : IGrainWithStringKey
{
    /// <summary>Folds readings that are already committed to the raw store into the patient's windows.</summary>
    [Alias("apply")]
    Task ApplyAsync(PatientReadings readings);

    /// <summary>The latest value of every vital the patient has, with its still-open minute.</summary>
    [Alias("live")]
    [AlwaysInterleave]
    Task<LiveSnapshot> GetLiveAsync();

    /// <summary>The still-open window of <paramref name="kind"/> at <paramref name="resolution"/>, if the patient has one.</summary>
    [Alias("open-window")]
    [AlwaysInterleave]
    Task<RollupWindow?> GetOpenWindowAsync(VitalKind kind, Resolution resolution);
}
