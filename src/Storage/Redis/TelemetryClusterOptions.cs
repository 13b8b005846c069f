using System.ComponentModel.DataAnnotations;

namespace Telemetry.Storage.Redis;

/// <summary>
/// Cluster mode, bound from <c>Telemetry:Cluster</c>. With <see cref="Redis"/> set, the server joins the cluster of
/// every server sharing that Redis and <see cref="ClusterId"/>: Orleans membership and durable grain state, care teams,
/// the patient directory and the alert history live in Redis, and the raw series and rollups must be on a server
/// (InfluxDB or VictoriaMetrics) every node reaches. Unset (the default), one server runs alone on its embedded file.
/// </summary>
public sealed class TelemetryClusterOptions : IValidatableObject
{
    public const string Section = "Telemetry:Cluster";

    /// <summary>A StackExchange.Redis connection string, for example <c>redis:6379,password=…</c>. Never logged.</summary>
    public string? Redis { get; set; }

    /// <summary>Names the cluster: servers with the same Redis and id form one. Default <c>telemetry</c>.</summary>
    [Required]
    [RegularExpression("^[A-Za-z0-9_.-]{1,64}$", ErrorMessage = "Telemetry:Cluster:ClusterId is 1 to 64 letters, digits and - _ .")]
    public string ClusterId { get; set; } = "telemetry";

    /// <summary>
    /// The address other servers reach this one's silo port at. Default: Orleans picks one of the machine's addresses;
    /// servers on one machine use <c>127.0.0.1</c>.
    /// </summary>
    public string? AdvertisedAddress { get; set; }

    public bool Enabled => !string.IsNullOrWhiteSpace(Redis);

    /// <summary>Where every key of this cluster starts; the braces keep them in one Redis Cluster slot, as scripts need.</summary>
    public string KeyPrefix => $"telemetry:{{{ClusterId}}}:";

    /// <summary>
    /// <see cref="Redis"/> read as StackExchange.Redis reads it; one it cannot read stops the start naming this setting
    /// (the message names the keyword at fault, never the string, which may hold a password).
    /// </summary>
    public StackExchange.Redis.ConfigurationOptions RedisConfiguration() =>
        TryReadRedis(out var configuration, out var problem) ? configuration : throw new InvalidOperationException($"{Section}:Redis {problem}");

    private bool TryReadRedis(out StackExchange.Redis.ConfigurationOptions configuration, out string? problem)
    {
        try
        {
            configuration = StackExchange.Redis.ConfigurationOptions.Parse(Redis!);
            problem = null;
            return true;
        }
        catch (ArgumentException exception)
        {
            configuration = null!;
            problem = $"is not a Redis connection string: {exception.Message}";
            return false;
        }
    }

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (Enabled && !TryReadRedis(out _, out var problem))
        {
            yield return new ValidationResult(problem, [nameof(Redis)]);
        }

        if (AdvertisedAddress is { Length: > 0 } address && !System.Net.IPAddress.TryParse(address, out _))
        {
            yield return new ValidationResult($"{Section}:AdvertisedAddress must be an IP address (it is '{address}').", [nameof(AdvertisedAddress)]);
        }
    }
}
