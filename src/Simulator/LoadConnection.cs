using System.Diagnostics;
using System.Net.Sockets;

namespace Telemetry.Simulator;

/// <summary>
/// What the lean load clients (<see cref="MqttLoadConnection"/>, <see cref="GrpcLoadConnection"/>) share: one socket,
/// each send made whole under one lock, the count of what waits for an answer, and a receive loop that hands what has
/// arrived to the protocol, which takes it a whole packet or frame at a time.
/// </summary>
public abstract class LoadConnection : IDisposable
{
    private const int ReceiveBufferBytes = 64 * 1024;

    private readonly byte[] _receive = new byte[ReceiveBufferBytes];
    private int _inFlight;
    private Task _receiving = Task.CompletedTask;
    private volatile bool _disposed;

    protected LoadConnection(Socket socket) => Socket = socket;

    /// <summary>Sent and not yet answered.</summary>
    public int InFlight => Volatile.Read(ref _inFlight);

    /// <summary>Completes when the connection ends: normally after <see cref="Dispose"/>, with the exception when it dropped or the server ended it.</summary>
    public Task Completion => _receiving;

    protected Socket Socket { get; }

    /// <summary>Held while a packet or frame is written, so that sends from the pacer and the receive loop do not interleave.</summary>
    protected Lock SendLock { get; } = new();

    protected bool Disposed => _disposed;

    /// <summary>What is in flight, as the message says it when the server closes the connection: "publishes", "batches".</summary>
    protected abstract string InFlightName { get; }

    /// <summary>Waits up to <paramref name="timeout"/> for everything sent to be answered; false when some was not (or the connection ended).</summary>
    public async Task<bool> DrainAsync(TimeSpan timeout)
    {
        var until = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        while (InFlight > 0 && !_receiving.IsCompleted && Stopwatch.GetTimestamp() < until)
        {
            await Task.Delay(10);
        }

        return InFlight == 0;
    }

    /// <summary>
    /// Connects to <paramref name="host"/>:<paramref name="port"/> (no Nagle delay: each packet or frame goes at once),
    /// makes the connection on the socket with <paramref name="create"/>, opens it in the protocol's way with
    /// <paramref name="open"/>, then starts its receive loop; the socket is closed when any of that fails.
    /// </summary>
    protected static async Task<T> ConnectAsync<T>(string host, int port, Func<Socket, T> create, Func<T, CancellationToken, Task> open, CancellationToken cancellationToken)
        where T : LoadConnection
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(host, port, cancellationToken);
            var connection = create(socket);
            await open(connection, cancellationToken);
            connection.StartReceiving();
            return connection;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Says goodbye in the protocol's way and closes the connection.</summary>
    public void Dispose()
    {
        _disposed = true;
        try
        {
            SayGoodbye();
            Socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception exception) when (exception is SocketException or ObjectDisposedException)
        {
            // Already gone.
        }

        Socket.Dispose();
    }

    /// <summary>What the protocol sends as this side closes.</summary>
    protected abstract void SayGoodbye();

    /// <summary>
    /// Takes the whole packets or frames at the start of <paramref name="received"/>, which arrived at
    /// <paramref name="now"/>, and returns how many bytes it took; throws when the server ended the connection.
    /// </summary>
    protected abstract int Receive(ReadOnlySpan<byte> received, long now);

    private void StartReceiving() => _receiving = Task.Run(ReceiveLoopAsync, CancellationToken.None);

    protected void Sent() => Interlocked.Increment(ref _inFlight);

    protected void Answered() => Interlocked.Decrement(ref _inFlight);

    protected void Send(ReadOnlySpan<byte> bytes)
    {
        lock (SendLock)
        {
            SendAll(bytes);
        }
    }

    /// <summary>Sends all of <paramref name="bytes"/>; the caller holds <see cref="SendLock"/>.</summary>
    protected void SendAll(ReadOnlySpan<byte> bytes)
    {
        while (!bytes.IsEmpty)
        {
            bytes = bytes[Socket.Send(bytes)..];
        }
    }

    private async Task ReceiveLoopAsync()
    {
        var start = 0;
        var end = 0;
        while (true)
        {
            if (end == _receive.Length)
            {
                if (start == 0)
                {
                    throw new InvalidOperationException("a packet larger than the receive buffer");
                }

                _receive.AsSpan(start, end - start).CopyTo(_receive);
                end -= start;
                start = 0;
            }

            int received;
            try
            {
                received = await Socket.ReceiveAsync(_receive.AsMemory(end), SocketFlags.None);
            }
            catch (Exception exception) when (_disposed || exception is ObjectDisposedException or SocketException { SocketErrorCode: SocketError.OperationAborted })
            {
                // This side closed the connection: a reset is the server's answer to that, not an error of the run.
                return;
            }

            if (received == 0)
            {
                if (_disposed)
                {
                    return;
                }

                throw new InvalidOperationException($"the server closed the connection ({InFlight} {InFlightName} unanswered)");
            }

            end += received;
            start += Receive(_receive.AsSpan(start, end - start), Stopwatch.GetTimestamp());
            if (start == end)
            {
                start = end = 0;
            }
        }
    }
}
