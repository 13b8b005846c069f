using System.ComponentModel.DataAnnotations;

namespace Telemetry.Storage.Influx;

/// <summary>
/// The InfluxDB 2 raw store, used when <c>Telemetry:Storage:RawStore</c> is <c>InfluxDb</c>. Bound from
/// <c>Telemetry:Storage:InfluxDb</c>.
/// </summary>
public sealed class InfluxOptions : IValidatableObject
{
    public const string Section = "Telemetry:Storage:InfluxDb";

    /// <summary>The server, for example <c>http://influxdb:8086</c>.</summary>
    public string Url { get; set; } = "";

    /// <summary>An API token with write and read access to <see cref="Bucket"/>. Never logged.</summary>
    public string Token { get; set; } = "";

    /// <summary>A file holding the token instead (a mounted secret); read once at start-up.</summary>
    public string? TokenFile { get; set; }

    [Required]
    public string Org { get; set; } = "telemetry";

    [Required]
    public string Bucket { get; set; } = "vitals";

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

    /// <summary>Compress writes with gzip (InfluxDB and VictoriaMetrics both accept it). Default on.</summary>
    public bool Gzip { get; set; } = true;

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (!Uri.TryCreate(Url, UriKind.Absolute, out var url) || url.Scheme is not ("http" or "https"))
        {
            yield return new ValidationResult(
                $"{Section}:Url must be the InfluxDB server's http or https address (it is '{Url}').", [nameof(Url)]);
        }

        if (string.IsNullOrEmpty(Token) && string.IsNullOrEmpty(TokenFile))
        {
            yield return new ValidationResult(
                $"{Section}:Token or {Section}:TokenFile must give an API token for the bucket.", [nameof(Token)]);
        }
    }

    /// <summary>The token, from <see cref="Token"/> or read from <see cref="TokenFile"/>.</summary>
    public string ResolveToken() =>
        string.IsNullOrEmpty(TokenFile) ? Token : File.ReadAllText(TokenFile).Trim();
}
