namespace Telemetry.Storage;

/// <summary>Where the raw series live, chosen by <c>Telemetry:Storage:RawStore</c>.</summary>
public enum RawStoreKind
{
    /// <summary>The embedded DuckDB file (the default): nothing to run beside the server.</summary>
    DuckDb,

    /// <summary>InfluxDB 2, configured under <c>Telemetry:Storage:InfluxDb</c>.</summary>
    InfluxDb,

    /// <summary>VictoriaMetrics (InfluxDB's write API, its own export API for reads), configured under <c>Telemetry:Storage:VictoriaMetrics</c>.</summary>
    VictoriaMetrics,
}
