using System.ComponentModel.DataAnnotations;

namespace Telemetry.Storage.Influx;

/// <summary>What every server the raw series can be written to (over InfluxDB's v2 write API) is configured with.</summary>
public abstract class SeriesServerOptions
{
    /// <summary>The server, for example <c>http://influxdb:8086</c> or <c>http://victoria-metrics:8428</c>.</summary>
    public string Url { get; set; } = "";

    /// <summary>How long one write or query may take before it counts as failed. Default 10 seconds.</summary>
    [Range(typeof(TimeSpan), "00:00:00.100", "00:10:00")]
    public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How long a commit keeps retrying a write InfluxDB refused as busy (429) or failing (5xx, no connection) before it
    /// gives up and the batches go unacknowledged. Default 10 seconds.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00", "00:10:00")]
    public TimeSpan RetryFor { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>The first wait between retries; it doubles each time up to <see cref="MaxRetryDelay"/>. Default 100 ms.</summary>
    [Range(typeof(TimeSpan), "00:00:00.001", "00:01:00")]
    public TimeSpan RetryDelay { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>The longest wait between retries, a server's <c>Retry-After</c> included. Default 2 seconds.</summary>
    [Range(typeof(TimeSpan), "00:00:00.001", "00:01:00")]
    public TimeSpan MaxRetryDelay { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// How long after answering a write the server may take to show it to reads: late windows recomputed at once are
    /// recomputed again after this long, and so are the grains a crash or a failed call left short. VictoriaMetrics shows
    /// a new series (a new patient, device or vital) up to about 10 seconds after its first write. Default 15 seconds.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:01", "00:10:00")]
    public TimeSpan ReadableAfter { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>Compress writes with gzip (InfluxDB and VictoriaMetrics both accept it). Default on.</summary>
    public bool Gzip { get; set; } = true;

    protected IEnumerable<ValidationResult> ValidateUrl(string section)
    {
        if (!Uri.TryCreate(Url, UriKind.Absolute, out var url) || url.Scheme is not ("http" or "https"))
        {
            yield return new ValidationResult($"{section}:Url must be the server's http or https address (it is '{Url}').", [nameof(Url)]);
        }
    }
}
