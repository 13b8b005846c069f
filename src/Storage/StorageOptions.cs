namespace Telemetry.Storage;

/// <summary>Where the series live, bound from <c>Telemetry:Storage</c>.</summary>
public sealed class StorageOptions
{
    public const string Section = "Telemetry:Storage";

    /// <summary>The raw series: the embedded file (default), InfluxDB or VictoriaMetrics.</summary>
    public RawStoreKind RawStore { get; set; } = RawStoreKind.DuckDb;

    /// <summary>The rollups: beside the raw series when those are on a server, in the embedded file otherwise (when unset).</summary>
    public RollupStoreKind? Rollups { get; set; }

    public RollupStoreKind EffectiveRollups => Rollups ?? (RawStore == RawStoreKind.DuckDb ? RollupStoreKind.DuckDb : RollupStoreKind.RawStore);
}

/// <summary>Where the grains' rollups are written.</summary>
public enum RollupStoreKind
{
    /// <summary>The embedded DuckDB file.</summary>
    DuckDb,

    /// <summary>The raw series' server (measurement <c>rollups</c>), which every node of a cluster shares.</summary>
    RawStore,
}
