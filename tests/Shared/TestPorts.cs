using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Telemetry.Testing;

/// <summary>
/// Loopback ports for the test servers, taken from below the kernel's ephemeral range.
/// </summary>
/// <remarks>
/// A port the kernel hands out for listening on port 0 lies in the ephemeral range, where it also hands out the local
/// ports of outgoing connections. A server killed and started again on its old ports could then find one of them taken
/// by any process's outgoing connection made in between (seen once in CI: "address already in use" on a restart).
/// Ports below the range are never given to outgoing connections, so only a listener can hold them.
/// </remarks>
internal static class TestPorts
{
    private const int Lowest = 10_000;
    private static readonly HashSet<int> Given = [];
    private static readonly int Highest = EphemeralStart() - 1;

    /// <summary>A port no listener holds now and that this process has not handed out before.</summary>
    public static int Free()
    {
        for (var attempt = 0; attempt < 1_000; attempt++)
        {
            var port = Random.Shared.Next(Lowest, Highest + 1);
            lock (Given)
            {
                if (Given.Contains(port) || !CanListen(port))
                {
                    continue;
                }

                Given.Add(port);
                return port;
            }
        }

        throw new InvalidOperationException($"no free loopback port between {Lowest} and {Highest}");
    }

    private static bool CanListen(int port)
    {
        try
        {
            using var listener = new TcpListener(IPAddress.Loopback, port);
            listener.Start();
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    /// <summary>The first port of <c>net.ipv4.ip_local_port_range</c> (32768 by default on Linux).</summary>
    private static int EphemeralStart()
    {
        const string Range = "/proc/sys/net/ipv4/ip_local_port_range";
        var first = File.Exists(Range) ? File.ReadAllText(Range).Split((char[])['\t', ' ', '\n'], StringSplitOptions.RemoveEmptyEntries) : [];
        return first.Length > 0 && int.TryParse(first[0], NumberStyles.None, CultureInfo.InvariantCulture, out var start) && start > Lowest + 1_000
            ? start
            : 32_768;
    }
}
