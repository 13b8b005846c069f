using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Net;
using Microsoft.Extensions.Options;
using Telemetry.Ingest;

namespace Telemetry.Api.Security;

/// <summary>
/// Slows down guessing tokens: a client address that presents more than
/// <see cref="RateLimitOptions.FailedSignInsPerMinute"/> refused bearer tokens in a minute has its tokens refused with
/// 429 for <see cref="RateLimitOptions.LockoutSeconds"/>. Requests without a token are not counted: they guess nothing.
/// </summary>
public sealed class SignInThrottle(IOptions<RateLimitOptions> options, TimeProvider timeProvider, IMeterFactory meterFactory)
{
    /// <summary>Addresses remembered at most; beyond it, those whose minute is over are forgotten.</summary>
    private const int MaxAddresses = 100_000;

    private readonly ConcurrentDictionary<IPAddress, Entry> _entries = new();
    private readonly Counter<long> _throttled = meterFactory.Create(IngestInstruments.MeterName).CreateCounter<long>(
        "telemetry.requests.throttled", description: "API requests refused with 429, by reason (rate, sign_in)");

    /// <summary>True (and how long to wait) when <paramref name="address"/> is locked out.</summary>
    public bool IsLockedOut(IPAddress address, out TimeSpan retryAfter)
    {
        var now = timeProvider.GetUtcNow();
        if (_entries.TryGetValue(address, out var entry) && entry.LockedUntil > now)
        {
            retryAfter = entry.LockedUntil - now;
            return true;
        }

        retryAfter = TimeSpan.Zero;
        return false;
    }

    /// <summary>Counts one refused token from <paramref name="address"/>.</summary>
    public void Failed(IPAddress address)
    {
        var now = timeProvider.GetUtcNow();
        if (_entries.Count >= MaxAddresses)
        {
            foreach (var (key, old) in _entries)
            {
                if (old.WindowStart.AddMinutes(1) < now && old.LockedUntil < now)
                {
                    _entries.TryRemove(key, out _);
                }
            }
        }

        _entries.AddOrUpdate(
            address,
            _ => new Entry(now, 1, DateTimeOffset.MinValue),
            (_, entry) =>
            {
                var current = entry.WindowStart.AddMinutes(1) > now ? entry with { Failures = entry.Failures + 1 } : new Entry(now, 1, entry.LockedUntil);
                return current.Failures > options.Value.FailedSignInsPerMinute
                    ? current with { LockedUntil = now.AddSeconds(options.Value.LockoutSeconds) }
                    : current;
            });
    }

    /// <summary>Counts a request refused with 429 in the metrics.</summary>
    public void Throttled(string reason) => _throttled.Add(1, new KeyValuePair<string, object?>("reason", reason));

    private sealed record Entry(DateTimeOffset WindowStart, int Failures, DateTimeOffset LockedUntil);
}
