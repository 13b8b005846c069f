using System.Buffers;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using System.Threading.Tasks.Sources;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Telemetry.Ingest.Mqtt;

/// <summary>
/// Refuses MQTT packets larger than the limit as soon as their fixed header arrives, before the broker buffers them:
/// an MQTT 5 client gets DISCONNECT with reason 0x95 (Packet too large), a 3.1.1 client a closed connection. MQTTnet
/// itself has no such limit and would read a packet of any size into memory first.
/// <para>
/// It also stops reading a connection while what the server sends it is backed up (the client does not read its
/// socket): the broker queues a PUBACK for every publish it reads, with no bound, and a publish refused at once
/// (a wrong topic, over its rate) costs the client almost nothing. The client is read again once its answers drain.
/// </para>
/// </summary>
public sealed class MqttPacketSizeGuard : PipeReader, IValueTaskSource<ReadResult>
{
    private const byte ProtocolLevel5 = 5;

    private readonly PipeReader _inner;
    private readonly BacklogWriter _output;
    private readonly long _limit;
    private readonly Action _refused;
    private ReadOnlySequence<byte> _lastBuffer;
    private long _bufferStart;
    private long _nextHeader;
    private byte _protocolLevel;
    private bool _refusedAlready;

    // A read the inner reader had to wait for: answered through this one reusable source (a pipe has one read pending
    // at a time), so that waiting costs no allocation per read.
    private ManualResetValueTaskSourceCore<ReadResult> _pending;
    private ValueTaskAwaiter<ReadResult> _innerRead;
    private CancellationToken _pendingCancellation;
    private readonly Action _innerReadDone;

    private MqttPacketSizeGuard(PipeReader inner, BacklogWriter output, long limit, Action refused)
    {
        _inner = inner;
        _output = output;
        _limit = limit;
        _refused = refused;
        _innerReadDone = InnerReadDone;
    }

    /// <summary>Room in an MQTT packet beyond its payload: fixed header, a device's topic and a few properties.</summary>
    public const int PacketOverheadBytes = 4_096;

    /// <summary>
    /// Connection middleware for the ingest's MQTT, over TCP or WebSocket: refuses packets over the payload limit
    /// (<see cref="IngestOptions.MaxMessageBytes"/>) and the room around it, counting each refusal.
    /// </summary>
    public static Func<ConnectionDelegate, ConnectionDelegate> ForIngest(IServiceProvider services)
    {
        var instruments = services.GetRequiredService<IngestInstruments>();
        return Middleware(
            services.GetRequiredService<IOptions<IngestOptions>>().Value.MaxMessageBytes + PacketOverheadBytes,
            () => instruments.PayloadRejected(MqttIngestEndpoint.Protocol, "packet_too_large"));
    }

    /// <summary>Connection middleware that refuses packets of more than <paramref name="limit"/> bytes on every connection it wraps.</summary>
    public static Func<ConnectionDelegate, ConnectionDelegate> Middleware(long limit, Action refused) => next => connection =>
    {
        var transport = connection.Transport;
        var output = new BacklogWriter(transport.Output);
        connection.Transport = new GuardedPipe(new MqttPacketSizeGuard(transport.Input, output, limit, refused), output);
        return next(connection);
    };

    /// <summary>The size of an MQTT packet whose fixed header starts <paramref name="input"/>, when the header is complete.</summary>
    public static bool TryReadPacketLength(in ReadOnlySequence<byte> input, out long packetLength)
    {
        packetLength = 0;
        var reader = new SequenceReader<byte>(input);
        if (!reader.TryRead(out _))
        {
            return false;
        }

        long remaining = 0;
        for (var i = 0; i < 4; i++)
        {
            if (!reader.TryRead(out var b))
            {
                return false;
            }

            remaining |= (long)(b & 0x7F) << (7 * i);
            if ((b & 0x80) == 0)
            {
                packetLength = 1 + (i + 1) + remaining;
                return true;
            }
        }

        // A fifth length byte is a protocol error: report it as too large to be refused.
        packetLength = long.MaxValue;
        return true;
    }

    /// <summary>
    /// Every read of the connection passes here, without an allocation or an await of its own when the packets in it
    /// are within the limit, the one case that matters for speed.
    /// </summary>
    public override ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
    {
        if (_output.Backlog is { IsCompleted: false } backlog)
        {
            return ReadOnceDrainedAsync(backlog, cancellationToken);
        }

        var read = _inner.ReadAsync(cancellationToken);
        if (read.IsCompletedSuccessfully)
        {
            var result = read.Result;
            return Inspect(result) ? new ValueTask<ReadResult>(result) : RefuseAsync(result, cancellationToken);
        }

        _pending.Reset();
        _pendingCancellation = cancellationToken;
        _innerRead = read.GetAwaiter();
        var pending = new ValueTask<ReadResult>(this, _pending.Version);
        _innerRead.UnsafeOnCompleted(_innerReadDone);
        return pending;
    }

    /// <summary>Reads once what the server sends the connection has drained (or the connection ends).</summary>
    private async ValueTask<ReadResult> ReadOnceDrainedAsync(Task backlog, CancellationToken cancellationToken)
    {
        await backlog.WaitAsync(cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        cancellationToken.ThrowIfCancellationRequested();
        return await ReadAsync(cancellationToken);
    }

    /// <summary>The inner read a <see cref="ReadAsync"/> waited for has completed: inspected, it completes that read.</summary>
    private void InnerReadDone()
    {
        ReadResult result;
        try
        {
            result = _innerRead.GetResult();
        }
        catch (Exception exception)
        {
            _pending.SetException(exception);
            return;
        }
        finally
        {
            _innerRead = default;
        }

        if (Inspect(result))
        {
            _pending.SetResult(result);
        }
        else
        {
            _ = CompleteWithRefusalAsync(result);
        }
    }

    private async Task CompleteWithRefusalAsync(ReadResult result)
    {
        try
        {
            _pending.SetResult(await RefuseAsync(result, _pendingCancellation));
        }
        catch (Exception exception)
        {
            _pending.SetException(exception);
        }
    }

    ReadResult IValueTaskSource<ReadResult>.GetResult(short token) => _pending.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource<ReadResult>.GetStatus(short token) => _pending.GetStatus(token);

    void IValueTaskSource<ReadResult>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _pending.OnCompleted(continuation, state, token, flags);

    public override bool TryRead(out ReadResult result)
    {
        if (_output.Backlog is { IsCompleted: false })
        {
            result = default;
            return false;
        }

        if (!_inner.TryRead(out result))
        {
            return false;
        }

        if (!Inspect(result))
        {
            var refused = RefuseAsync(result, CancellationToken.None);
            result = refused.IsCompletedSuccessfully ? refused.Result : refused.AsTask().GetAwaiter().GetResult();
        }

        return true;
    }

    public override void AdvanceTo(SequencePosition consumed) => AdvanceTo(consumed, consumed);

    public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
    {
        _bufferStart += _lastBuffer.Slice(_lastBuffer.Start, consumed).Length;
        _inner.AdvanceTo(consumed, examined);
    }

    public override void CancelPendingRead() => _inner.CancelPendingRead();

    public override void Complete(Exception? exception = null) => _inner.Complete(exception);

    /// <summary>Reads the headers of the packets that begin in <paramref name="result"/>; false once one is over the limit.</summary>
    private bool Inspect(in ReadResult result)
    {
        var buffer = result.Buffer;
        _lastBuffer = buffer;
        while (_nextHeader - _bufferStart < buffer.Length)
        {
            var header = buffer.Slice(_nextHeader - _bufferStart);
            if (!TryReadPacketLength(header, out var packetLength))
            {
                break;
            }

            if (_protocolLevel == 0)
            {
                _protocolLevel = ReadProtocolLevel(header);
            }

            if (packetLength > _limit)
            {
                return false;
            }

            _nextHeader += packetLength;
        }

        return true;
    }

    /// <summary>Refuses the connection's packet over the limit, and hands the broker the end of its input.</summary>
    private async ValueTask<ReadResult> RefuseAsync(ReadResult result, CancellationToken cancellationToken)
    {
        if (!_refusedAlready)
        {
            _refusedAlready = true;
            _refused();
            if (_protocolLevel == ProtocolLevel5)
            {
                // DISCONNECT, remaining length 2, reason 0x95 Packet too large, no properties.
                await _output.WriteAsync(new byte[] { 0xE0, 0x02, 0x95, 0x00 }, cancellationToken);
            }

            await _output.CompleteAsync();
        }

        return new ReadResult(result.Buffer.Slice(result.Buffer.Start, 0), isCanceled: false, isCompleted: true);
    }

    /// <summary>The protocol level of a CONNECT packet (4 for 3.1.1, 5 for 5.0), or 0 when it is not one or not all here.</summary>
    private static byte ReadProtocolLevel(in ReadOnlySequence<byte> packet)
    {
        var reader = new SequenceReader<byte>(packet);
        if (!reader.TryRead(out var type) || type >> 4 != 1)
        {
            return 0;
        }

        for (var i = 0; i < 4; i++)
        {
            if (!reader.TryRead(out var b) || (b & 0x80) == 0)
            {
                break;
            }
        }

        // Protocol name: two length bytes and "MQTT" (or "MQIsdp"), then the level.
        if (!reader.TryReadBigEndian(out short nameLength) || nameLength < 0 || reader.Remaining < nameLength)
        {
            return 0;
        }

        reader.Advance(nameLength);
        return reader.TryRead(out var level) ? level : (byte)0;
    }

    /// <summary>
    /// The connection's output, noting a flush that did not complete at once: the transport's buffer is over its
    /// threshold, the client not reading fast enough. Only then is anything allocated.
    /// </summary>
    private sealed class BacklogWriter(PipeWriter inner) : PipeWriter
    {
        private Task<FlushResult>? _backlog;

        /// <summary>The latest flush that had to wait; done once the output has drained below the threshold.</summary>
        public Task<FlushResult>? Backlog => Volatile.Read(ref _backlog);

        public override bool CanGetUnflushedBytes => inner.CanGetUnflushedBytes;

        public override long UnflushedBytes => inner.UnflushedBytes;

        public override void Advance(int bytes) => inner.Advance(bytes);

        public override Memory<byte> GetMemory(int sizeHint = 0) => inner.GetMemory(sizeHint);

        public override Span<byte> GetSpan(int sizeHint = 0) => inner.GetSpan(sizeHint);

        public override void CancelPendingFlush() => inner.CancelPendingFlush();

        public override void Complete(Exception? exception = null) => inner.Complete(exception);

        public override ValueTask CompleteAsync(Exception? exception = null) => inner.CompleteAsync(exception);

        public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default) => Noted(inner.FlushAsync(cancellationToken));

        public override ValueTask<FlushResult> WriteAsync(ReadOnlyMemory<byte> source, CancellationToken cancellationToken = default) =>
            Noted(inner.WriteAsync(source, cancellationToken));

        private ValueTask<FlushResult> Noted(ValueTask<FlushResult> flush)
        {
            if (flush.IsCompleted)
            {
                return flush;
            }

            var waiting = flush.AsTask();
            Volatile.Write(ref _backlog, waiting);
            return new ValueTask<FlushResult>(waiting);
        }
    }

    private sealed class GuardedPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }
}
