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
/// An IPv6 client counts by its /64 (one host holds a whole /64, and could otherwise guess from a new address each time).
/// </summary>
public sealed class SignInThrottle(IOptions<RateLimitOptions> options, TimeProvider timeProvider, IMeterFactory meterFactory)
{
    /// <summary>
    /// Addresses remembered at most; beyond it (at most every <see cref="PruneInterval"/>), those whose minute is over
    /// are forgotten, and if that is not enough, every one not locked out.
    /// </summary>
    private const int MaxAddresses = 100_000;

    private static readonly TimeSpan PruneInterval = TimeSpan.FromSeconds(10);
    private long _pruneDueTicks;

    private readonly ConcurrentDictionary<IPAddress, Entry> _entries = new();
    private readonly Counter<long> _throttled = meterFactory.Create(IngestInstruments.MeterName).CreateCounter<long>(
        "telemetry.requests.throttled", description: "API requests refused with 429, by reason (rate, sign_in)");

    /// <summary>True (and how long to wait) when <paramref name="address"/> is locked out.</summary>
    public bool IsLockedOut(IPAddress address, out TimeSpan retryAfter)
    {
        var now = timeProvider.GetUtcNow();
        if (_entries.TryGetValue(KeyOf(address), out var entry) && entry.LockedUntil > now)
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
            Prune(now);
        }

        _entries.AddOrUpdate(
            KeyOf(address),
            _ => new Entry(now, 1, DateTimeOffset.MinValue),
            (_, entry) =>
            {
                var current = entry.WindowStart.AddMinutes(1) > now ? entry with { Failures = entry.Failures + 1 } : new Entry(now, 1, entry.LockedUntil);
                return current.Failures > options.Value.FailedSignInsPerMinute
                    ? current with { LockedUntil = now.AddSeconds(options.Value.LockoutSeconds) }
                    : current;
            });
    }

    /// <summary>What an address is counted by: itself (IPv4, an IPv4-mapped IPv6 address as IPv4), or its IPv6 /64.</summary>
    internal static IPAddress KeyOf(IPAddress address)
    {
        if (address.IsIPv4MappedToIPv6)
        {
            return address.MapToIPv4();
        }

        if (address.AddressFamily != System.Net.Sockets.AddressFamily.InterNetworkV6)
        {
            return address;
        }

        Span<byte> bytes = stackalloc byte[16];
        address.TryWriteBytes(bytes, out _);
        bytes[8..].Clear();
        return new IPAddress(bytes);
    }

    /// <summary>Forgets addresses, one thread at a time and at most every <see cref="PruneInterval"/> (each prune walks them all).</summary>
    private void Prune(DateTimeOffset now)
    {
        var due = Interlocked.Read(ref _pruneDueTicks);
        if (now.UtcTicks < due || Interlocked.CompareExchange(ref _pruneDueTicks, (now + PruneInterval).UtcTicks, due) != due)
        {
            return;
        }

        foreach (var (key, old) in _entries)
        {
            if (old.WindowStart.AddMinutes(1) < now && old.LockedUntil < now)
            {
                _entries.TryRemove(key, out _);
            }
        }

        // Still full of addresses within their minute (very many, each guessing a little): those not locked out go, so
        // the table stays bounded and every lockout is kept.
        if (_entries.Count >= MaxAddresses)
        {
            foreach (var (key, old) in _entries)
            {
                if (old.LockedUntil < now)
                {
                    _entries.TryRemove(key, out _);
                }
            }
        }
    }

    /// <summary>Counts a request refused with 429 in the metrics.</summary>
    public void Throttled(string reason) => _throttled.Add(1, new KeyValuePair<string, object?>("reason", reason));

    private sealed record Entry(DateTimeOffset WindowStart, int Failures, DateTimeOffset LockedUntil);
}
