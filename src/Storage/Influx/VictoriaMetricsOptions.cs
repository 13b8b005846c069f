using System.ComponentModel.DataAnnotations;

namespace Telemetry.Storage.Influx;

/// <summary>
/// VictoriaMetrics as the raw store, used when <c>Telemetry:Storage:RawStore</c> is <c>VictoriaMetrics</c>: written through
/// its InfluxDB v2 write API (so with InfluxDB.Client, as InfluxDB is) and read through its export API. Bound from
/// <c>Telemetry:Storage:VictoriaMetrics</c>. Run it with <c>-dedup.minScrapeInterval=1ms</c>, so that a reading written
/// twice is kept once, as InfluxDB keeps it. It takes no credentials from here: keep it on a network only the servers reach.
/// </summary>
public sealed class VictoriaMetricsOptions : SeriesServerOptions, IValidatableObject
{
    public const string Section = "Telemetry:Storage:VictoriaMetrics";

    public VictoriaMetricsOptions() => Url = "http://localhost:8428";

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext) => ValidateUrl(Section);
}
