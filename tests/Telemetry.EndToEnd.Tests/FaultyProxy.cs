using System.Net;
using System.Net.Sockets;

namespace Telemetry.EndToEnd.Tests;

/// <summary>
/// A TCP proxy on loopback between devices and the server that the test can make misbehave: cut every connection
/// at once (a reset, as a phone losing its network), stop passing the server's answers while keeping the connection
/// open (half-open: the device waits for acks that never come), or delay every chunk in both directions.
/// </summary>
public sealed class FaultyProxy : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly int _target;
    private readonly CancellationTokenSource _stopping = new();
    private readonly List<(TcpClient Client, TcpClient Server)> _connections = [];
    private readonly Task _accepting;
    private volatile bool _blackhole;
    private int _delayMs;

    public FaultyProxy(int targetPort)
    {
        _target = targetPort;
        _listener.Start();
        _accepting = AcceptAsync();
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    /// <summary>How many connections were cut so far.</summary>
    public int Cuts { get; private set; }

    /// <summary>Resets every open connection.</summary>
    public void CutAll()
    {
        lock (_connections)
        {
            foreach (var (client, server) in _connections)
            {
                client.Client.LingerState = new LingerOption(true, 0);
                client.Dispose();
                server.Dispose();
                Cuts++;
            }

            _connections.Clear();
        }
    }

    /// <summary>While on, the server's bytes are swallowed: connections stay open, but no ack reaches a device.</summary>
    public bool Blackhole
    {
        get => _blackhole;
        set => _blackhole = value;
    }

    /// <summary>A delay before every chunk is passed on, in both directions.</summary>
    public TimeSpan Delay
    {
        get => TimeSpan.FromMilliseconds(Volatile.Read(ref _delayMs));
        set => Volatile.Write(ref _delayMs, (int)value.TotalMilliseconds);
    }

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        _listener.Stop();
        CutAll();
        try
        {
            await _accepting;
        }
        catch (OperationCanceledException)
        {
            // Stopped.
        }

        _stopping.Dispose();
    }

    private async Task AcceptAsync()
    {
        while (!_stopping.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await _listener.AcceptTcpClientAsync(_stopping.Token);
            }
            catch (Exception exception) when (exception is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }

            var server = new TcpClient();
            try
            {
                await server.ConnectAsync(IPAddress.Loopback, _target, _stopping.Token);
            }
            catch (Exception exception) when (exception is SocketException or OperationCanceledException)
            {
                // The server is not there: the device sees its connection close.
                client.Dispose();
                server.Dispose();
                continue;
            }

            lock (_connections)
            {
                _connections.Add((client, server));
            }

            _ = PumpAsync(client.GetStream(), server.GetStream(), swallow: false);
            _ = PumpAsync(server.GetStream(), client.GetStream(), swallow: true);
        }
    }

    private async Task PumpAsync(NetworkStream from, NetworkStream to, bool swallow)
    {
        var buffer = new byte[16_384];
        try
        {
            while (true)
            {
                var read = await from.ReadAsync(buffer, _stopping.Token);
                if (read == 0)
                {
                    to.Socket.Shutdown(SocketShutdown.Send);
                    return;
                }

                if (Volatile.Read(ref _delayMs) is var delay and > 0)
                {
                    await Task.Delay(delay, _stopping.Token);
                }

                if (!(swallow && _blackhole))
                {
                    await to.WriteAsync(buffer.AsMemory(0, read), _stopping.Token);
                }
            }
        }
        catch (Exception exception) when (exception is IOException or SocketException or ObjectDisposedException or OperationCanceledException or InvalidOperationException)
        {
            // Cut, or the other side went away.
        }
    }
}
