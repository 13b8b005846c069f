using System.IO.Pipelines;
using Microsoft.AspNetCore.Connections;

namespace Telemetry.Ingest.Mqtt;

/// <summary>
/// Lets what the broker wrote reach the device before its connection closes. When the broker ends a connection itself (a
/// DISCONNECT with its reason: token rotated or revoked, server shutting down), MQTTnet cancels its read and completes
/// the transport's output with that cancellation; Kestrel then drops what it has not sent yet, often the DISCONNECT
/// itself, and the device sees a bare close. Completed without the cancellation, the output is sent to its end first.
/// </summary>
public sealed class MqttOrderlyClose(PipeWriter inner) : PipeWriter
{
    /// <summary>Kestrel connection middleware that closes every connection of the listener in order.</summary>
    public static ConnectionDelegate Middleware(ConnectionDelegate next) => connection =>
    {
        connection.Transport = new Transport(connection.Transport.Input, new MqttOrderlyClose(connection.Transport.Output));
        return next(connection);
    };

    public override bool CanGetUnflushedBytes => inner.CanGetUnflushedBytes;

    public override long UnflushedBytes => inner.UnflushedBytes;

    public override void Advance(int bytes) => inner.Advance(bytes);

    public override Memory<byte> GetMemory(int sizeHint = 0) => inner.GetMemory(sizeHint);

    public override Span<byte> GetSpan(int sizeHint = 0) => inner.GetSpan(sizeHint);

    public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default) => inner.FlushAsync(cancellationToken);

    public override ValueTask<FlushResult> WriteAsync(ReadOnlyMemory<byte> source, CancellationToken cancellationToken = default) =>
        inner.WriteAsync(source, cancellationToken);

    public override void CancelPendingFlush() => inner.CancelPendingFlush();

    public override void Complete(Exception? exception = null) => inner.Complete(Orderly(exception));

    public override ValueTask CompleteAsync(Exception? exception = null) => inner.CompleteAsync(Orderly(exception));

    // A cancelled read is how MQTTnet stops a connection, not a fault of the connection; any other error still aborts it.
    private static Exception? Orderly(Exception? exception) => exception is OperationCanceledException ? null : exception;

    private sealed class Transport(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }
}
