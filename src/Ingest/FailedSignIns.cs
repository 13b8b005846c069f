using System.Collections.Concurrent;
using System.Net;

namespace Telemetry.Ingest;

/// <summary>
/// Counts refused credentials by client address: an address that presents more than <c>perMinute</c> of them in a
/// minute is locked out for <c>lockout</c>. An IPv6 client counts by its /64 (one host holds a whole /64, and could
/// otherwise try from a new address each time). Bounded: at most <see cref="MaxAddresses"/> addresses are remembered.
/// Thread-safe.
/// </summary>
public sealed class FailedSignIns(Func<int> perMinute, Func<TimeSpan> lockout, TimeProvider timeProvider)
{
    /// <summary>
    /// Addresses remembered at most; beyond it (at most every <see cref="PruneInterval"/>), those whose minute is over
    /// are forgotten, and if that is not enough, every one not locked out.
    /// </summary>
    public const int MaxAddresses = 100_000;

    private static readonly TimeSpan PruneInterval = TimeSpan.FromSeconds(10);
    private long _pruneDueTicks;

    private readonly ConcurrentDictionary<IPAddress, Entry> _entries = new();

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

    /// <summary>Counts one refused credential from <paramref name="address"/>.</summary>
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
                return current.Failures > perMinute()
                    ? current with { LockedUntil = now + lockout() }
                    : current;
            });
    }

    /// <summary>What an address is counted by: itself (IPv4, an IPv4-mapped IPv6 address as IPv4), or its IPv6 /64.</summary>
    public static IPAddress KeyOf(IPAddress address)
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

        // Still full of addresses within their minute (very many, each trying a little): those not locked out go, so
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

    private sealed record Entry(DateTimeOffset WindowStart, int Failures, DateTimeOffset LockedUntil);
}
