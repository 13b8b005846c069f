using System.Diagnostics.Metrics;
using System.Net;
using Microsoft.Extensions.Options;
using Telemetry.Ingest;

namespace Telemetry.Api.Security;

/// <summary>
/// Slows down guessing tokens: a client address that presents more than
/// <see cref="RateLimitOptions.FailedSignInsPerMinute"/> refused bearer tokens in a minute has its tokens refused with
/// 429 for <see cref="RateLimitOptions.LockoutSeconds"/> (see <see cref="FailedSignIns"/>). Requests without a token are
/// not counted: they guess nothing.
/// </summary>
public sealed class SignInThrottle(IOptions<RateLimitOptions> options, TimeProvider timeProvider, IMeterFactory meterFactory)
{
    private readonly FailedSignIns _failures = new(
        () => options.Value.FailedSignInsPerMinute, () => TimeSpan.FromSeconds(options.Value.LockoutSeconds), timeProvider);

    private readonly Counter<long> _throttled = meterFactory.Create(IngestInstruments.MeterName).CreateCounter<long>(
        "telemetry.requests.throttled", description: "API requests refused with 429, by reason (rate, sign_in)");

    /// <summary>True (and how long to wait) when <paramref name="address"/> is locked out.</summary>
    public bool IsLockedOut(IPAddress address, out TimeSpan retryAfter) => _failures.IsLockedOut(address, out retryAfter);

    /// <summary>Counts one refused token from <paramref name="address"/>.</summary>
    public void Failed(IPAddress address) => _failures.Failed(address);

    /// <summary>Counts a request refused with 429 in the metrics.</summary>
    public void Throttled(string reason) => _throttled.Add(1, new KeyValuePair<string, object?>("reason", reason));
}
