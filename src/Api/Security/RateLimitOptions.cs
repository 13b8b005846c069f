using System.ComponentModel.DataAnnotations;

namespace Telemetry.Api.Security;

/// <summary>Limits on people's and tools' use of the API. Bound from <c>Telemetry:Auth:RateLimits</c>.</summary>
public sealed class RateLimitOptions
{
    public const string Section = "Telemetry:Auth:RateLimits";

    /// <summary>Requests per second one caller (a token's subject, or an address without a token) may make to the API. Default 200.</summary>
    [Range(1, 1_000_000)]
    public int RequestsPerSecond { get; set; } = 200;

    /// <summary>How many requests a caller may make at once above that pace. Default 400.</summary>
    [Range(1, 1_000_000)]
    public int Burst { get; set; } = 400;

    /// <summary>
    /// Refused bearer tokens one client address may present in a minute before its tokens are refused (429) for
    /// <see cref="LockoutSeconds"/>, valid or not. Default 30. Behind a proxy every client shares its address.
    /// </summary>
    [Range(1, 1_000_000)]
    public int FailedSignInsPerMinute { get; set; } = 30;

    [Range(1, 86_400)]
    public int LockoutSeconds { get; set; } = 60;
}
