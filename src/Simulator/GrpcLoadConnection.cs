using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using Google.Protobuf;
using Telemetry.Protos;

namespace Telemetry.Simulator;

/// <summary>
/// A minimal gRPC client for load: one HTTP/2 connection (cleartext, prior knowledge) carrying one call of
/// <c>telemetry.v1.Ingest/Stream</c>, its batches written as DATA frames straight from a reused buffer and its acks
/// matched to their batches by sequence number. The bytes on the wire are what any gRPC client sends; what it leaves
/// out is the general machinery (Grpc.Net.Client over SocketsHttpHandler), which cost the load generator about three
/// times the CPU per reading of the lean MQTT client, taken from the cores the server runs on.
/// </summary>
/// <remarks>
/// It keeps to HTTP/2's flow control (a batch the server's windows cannot take now is not sent: see
/// <see cref="TrySend"/>), answers SETTINGS and PING, and grants the server windows for its acks. It reads no header
/// block beyond looking for <c>grpc-status</c> and <c>grpc-message</c> when the server ends the call. It does not
/// reconnect or resend: a call that ends early ends the connection with an exception, and what it had in flight is
/// reported unanswered. The Simulator's default client (Grpc.Net.Client) does that; this one is for measuring throughput.
/// </remarks>
public sealed class GrpcLoadConnection : LoadConnection
{
    /// <summary>
    /// Batches a device may have waiting for acks: more than the server takes in at once on a stream, so that its flow
    /// control, not this client, holds a device that gets ahead, as it holds any gRPC client.
    /// </summary>
    public const int MostInFlight = 1_024;

    private const int FrameHeaderBytes = 9;
    private const int MessagePrefixBytes = 5;
    private const int StreamId = 1;
    private const int DefaultWindow = 65_535;
    private const int LargestWindow = int.MaxValue;
    private const byte Data = 0x0;
    private const byte Headers = 0x1;
    private const byte ResetStream = 0x3;
    private const byte Settings = 0x4;
    private const byte Ping = 0x6;
    private const byte GoAway = 0x7;
    private const byte WindowUpdate = 0x8;
    private const byte EndStream = 0x1;
    private const byte Ack = 0x1;
    private const byte EndHeaders = 0x4;
    private const byte Padded = 0x8;

    private static ReadOnlySpan<byte> Preface => "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8;

    // By sequence number modulo the slots: a batch in flight, its readings and when it was sent.
    private readonly ulong[] _sequences;
    private readonly long[] _startedAt;
    private readonly int[] _readings;
    private readonly bool[] _waiting;
    private byte[] _send = new byte[1024];
    private byte[] _message = new byte[256];
    private int _messageLength;
    private long _connectionWindow = DefaultWindow;
    private long _streamWindow = DefaultWindow;
    private int _serverInitialWindow = DefaultWindow;
    private int _maxFrame = 16_384;
    private long _receivedSinceUpdate;

    private GrpcLoadConnection(Socket socket, int maxInFlight)
        : base(socket)
    {
        _sequences = new ulong[maxInFlight];
        _startedAt = new long[maxInFlight];
        _readings = new int[maxInFlight];
        _waiting = new bool[maxInFlight];
    }

    /// <summary>An ack came for a batch: its readings, when it was sent, when the ack came, and the ack.</summary>
    public Action<int, long, long, IngestAck>? Acked { get; set; }

    protected override string InFlightName => "batches";

    /// <summary>
    /// Connects to the gRPC endpoint at <paramref name="host"/>:<paramref name="port"/> and opens the call with the
    /// device's <paramref name="token"/>; at most <paramref name="maxInFlight"/> batches wait for their acks at once. A
    /// refused token ends the call at once, which <see cref="Completion"/> then reports.
    /// </summary>
    public static async Task<GrpcLoadConnection> ConnectAsync(string host, int port, string token, int maxInFlight, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxInFlight, 1);
        return await ConnectAsync(
            host,
            port,
            socket => new GrpcLoadConnection(socket, maxInFlight),
            (connection, _) =>
            {
                connection.Open($"{host}:{port}", token);
                return Task.CompletedTask;
            },
            cancellationToken);
    }

    /// <summary>
    /// Sends <paramref name="batch"/>, its ack to be reported through <see cref="Acked"/> with
    /// <paramref name="readings"/> and the moment it was sent; false, and nothing sent, when the most batches are already
    /// in flight or the server's flow-control windows cannot take it now (the server reads a stream only as fast as it
    /// commits, so its windows fill as a device gets ahead of it).
    /// </summary>
    /// <param name="intendedAt">When the batch was due to go (a <see cref="Stopwatch"/> timestamp), which its ack is timed
    /// from: a pacer running late, or a batch held for flow control, is part of the latency, not left out of it (now when
    /// null).</param>
    public bool TrySend(VitalBatch batch, int readings, long? intendedAt = null)
    {
        var size = batch.CalculateSize();
        var payload = MessagePrefixBytes + size;
        var slot = (int)(batch.Seq % (ulong)_waiting.Length);
        lock (SendLock)
        {
            if (Volatile.Read(ref _waiting[slot]) || payload > _connectionWindow || payload > _streamWindow)
            {
                return false;
            }

            var frames = (payload + _maxFrame - 1) / _maxFrame;
            var length = payload + (frames * FrameHeaderBytes);
            if (_send.Length < length)
            {
                _send = new byte[Math.Max(length, _send.Length * 2)];
            }

            // The message (a flag for "not compressed" and its length, then the batch) is written after room for the
            // first frame's header, then split into frames of at most the server's frame size.
            var message = _send.AsSpan(FrameHeaderBytes, payload);
            message[0] = 0;
            BinaryPrimitives.WriteUInt32BigEndian(message[1..], (uint)size);
            batch.WriteTo(message.Slice(MessagePrefixBytes, size));
            if (frames > 1)
            {
                for (var frame = frames - 1; frame > 0; frame--)
                {
                    var from = FrameHeaderBytes + (frame * _maxFrame);
                    var part = Math.Min(_maxFrame, FrameHeaderBytes + payload - from);
                    _send.AsSpan(from, part).CopyTo(_send.AsSpan(from + (frame * FrameHeaderBytes)));
                }
            }

            for (var frame = 0; frame < frames; frame++)
            {
                var at = frame * (_maxFrame + FrameHeaderBytes);
                WriteFrameHeader(_send.AsSpan(at), Math.Min(_maxFrame, payload - (frame * _maxFrame)), Data, 0, StreamId);
            }

            _connectionWindow -= payload;
            _streamWindow -= payload;

            // Timed from when it was due, or from just before the send.
            _sequences[slot] = batch.Seq;
            _startedAt[slot] = intendedAt ?? Stopwatch.GetTimestamp();
            _readings[slot] = readings;
            Volatile.Write(ref _waiting[slot], true);
            Sent();
            SendAll(_send.AsSpan(0, length));
        }

        return true;
    }

    /// <summary>The end of the call's request stream: an empty DATA frame that ends it.</summary>
    protected override void SayGoodbye()
    {
        Span<byte> end = stackalloc byte[FrameHeaderBytes];
        WriteFrameHeader(end, 0, Data, EndStream, StreamId);
        Send(end);
    }

    /// <summary>The connection preface, this side's settings, a window for the server's acks, and the call's headers.</summary>
    private void Open(string authority, string token)
    {
        var headers = new byte[512 + token.Length];
        var length = 0;
        length = WriteHeader(headers, length, ":method", "POST");
        length = WriteHeader(headers, length, ":scheme", "http");
        length = WriteHeader(headers, length, ":authority", authority);
        length = WriteHeader(headers, length, ":path", "/telemetry.v1.Ingest/Stream");
        length = WriteHeader(headers, length, "content-type", "application/grpc");
        length = WriteHeader(headers, length, "te", "trailers");
        length = WriteHeader(headers, length, "authorization", $"Bearer {token}");

        var opening = new byte[Preface.Length + FrameHeaderBytes + 12 + FrameHeaderBytes + 4 + FrameHeaderBytes + length];
        var at = 0;
        Preface.CopyTo(opening);
        at += Preface.Length;

        // No server push; the server may send acks up to HTTP/2's largest window without waiting for this side.
        WriteFrameHeader(opening.AsSpan(at), 12, Settings, 0, 0);
        at += FrameHeaderBytes;
        BinaryPrimitives.WriteUInt16BigEndian(opening.AsSpan(at), 0x2);
        BinaryPrimitives.WriteUInt32BigEndian(opening.AsSpan(at + 2), 0);
        BinaryPrimitives.WriteUInt16BigEndian(opening.AsSpan(at + 6), 0x4);
        BinaryPrimitives.WriteUInt32BigEndian(opening.AsSpan(at + 8), LargestWindow);
        at += 12;
        WriteFrameHeader(opening.AsSpan(at), 4, WindowUpdate, 0, 0);
        BinaryPrimitives.WriteUInt32BigEndian(opening.AsSpan(at + FrameHeaderBytes), LargestWindow - DefaultWindow);
        at += FrameHeaderBytes + 4;
        WriteFrameHeader(opening.AsSpan(at), length, Headers, EndHeaders, StreamId);
        at += FrameHeaderBytes;
        headers.AsSpan(0, length).CopyTo(opening.AsSpan(at));
        Send(opening);
    }

    protected override int Receive(ReadOnlySpan<byte> received, long now)
    {
        var taken = 0;
        while (received.Length - taken >= FrameHeaderBytes)
        {
            var header = received.Slice(taken, FrameHeaderBytes);
            var length = (header[0] << 16) | (header[1] << 8) | header[2];
            if (received.Length - taken < FrameHeaderBytes + length)
            {
                break;
            }

            var (type, flags) = (header[3], header[4]);
            var stream = (int)(BinaryPrimitives.ReadUInt32BigEndian(header[5..]) & 0x7FFF_FFFF);
            var body = received.Slice(taken + FrameHeaderBytes, length);
            taken += FrameHeaderBytes + length;
            if (OnFrame(type, flags, stream, body, now) is { } ended && !Disposed)
            {
                throw new InvalidOperationException($"{ended} ({InFlight} batches unanswered)");
            }
        }

        return taken;
    }

    /// <summary>Handles one frame from the server; returns why the call ended when it did.</summary>
    private string? OnFrame(byte type, byte flags, int stream, ReadOnlySpan<byte> body, long now)
    {
        switch (type)
        {
            case Data when stream == StreamId:
                var data = body;
                if ((flags & Padded) != 0)
                {
                    data = body.Slice(1, body.Length - 1 - body[0]);
                }

                OnData(data, now);
                GrantWindow(body.Length);
                return (flags & EndStream) != 0 ? "the server ended the call" : null;
            case Headers when stream == StreamId:
                return (flags & EndStream) != 0 ? $"the server ended the call: {Status(body)}" : null;
            case ResetStream:
                return $"the server reset the call: HTTP/2 error 0x{BinaryPrimitives.ReadUInt32BigEndian(body):x}";
            case GoAway:
                return $"the server closed the connection: HTTP/2 error 0x{BinaryPrimitives.ReadUInt32BigEndian(body[4..]):x}";
            case Settings when (flags & Ack) == 0:
                OnSettings(body);
                return null;
            case Ping when (flags & Ack) == 0:
                Span<byte> pong = stackalloc byte[FrameHeaderBytes + 8];
                WriteFrameHeader(pong, 8, Ping, Ack, 0);
                body.CopyTo(pong[FrameHeaderBytes..]);
                Send(pong);
                return null;
            case WindowUpdate:
                var increment = BinaryPrimitives.ReadUInt32BigEndian(body) & 0x7FFF_FFFF;
                lock (SendLock)
                {
                    if (stream == 0)
                    {
                        _connectionWindow += increment;
                    }
                    else if (stream == StreamId)
                    {
                        _streamWindow += increment;
                    }
                }

                return null;
            default:
                return null;
        }
    }

    /// <summary>Takes the server's settings (its window for this stream, its largest frame) and acknowledges them.</summary>
    private void OnSettings(ReadOnlySpan<byte> body)
    {
        lock (SendLock)
        {
            for (var at = 0; at + 6 <= body.Length; at += 6)
            {
                var value = BinaryPrimitives.ReadUInt32BigEndian(body[(at + 2)..]);
                switch (BinaryPrimitives.ReadUInt16BigEndian(body[at..]))
                {
                    case 0x4:
                        _streamWindow += (long)value - _serverInitialWindow;
                        _serverInitialWindow = (int)value;
                        break;
                    case 0x5:
                        _maxFrame = (int)value;
                        break;
                }
            }

            Span<byte> ack = stackalloc byte[FrameHeaderBytes];
            WriteFrameHeader(ack, 0, Settings, Ack, 0);
            SendAll(ack);
        }
    }

    /// <summary>Gathers the call's messages from DATA frames (one may span several) and reports each ack.</summary>
    private void OnData(ReadOnlySpan<byte> data, long now)
    {
        if (_message.Length < _messageLength + data.Length)
        {
            Array.Resize(ref _message, Math.Max(_messageLength + data.Length, _message.Length * 2));
        }

        data.CopyTo(_message.AsSpan(_messageLength));
        _messageLength += data.Length;
        var at = 0;
        while (_messageLength - at >= MessagePrefixBytes)
        {
            var size = (int)BinaryPrimitives.ReadUInt32BigEndian(_message.AsSpan(at + 1));
            if (_messageLength - at < MessagePrefixBytes + size)
            {
                break;
            }

            OnAck(IngestAck.Parser.ParseFrom(_message.AsSpan(at + MessagePrefixBytes, size)), now);
            at += MessagePrefixBytes + size;
        }

        _message.AsSpan(at, _messageLength - at).CopyTo(_message);
        _messageLength -= at;
    }

    private void OnAck(IngestAck ack, long now)
    {
        var slot = (int)(ack.Seq % (ulong)_waiting.Length);
        if (!Volatile.Read(ref _waiting[slot]) || _sequences[slot] != ack.Seq)
        {
            return;
        }

        var (readings, started) = (_readings[slot], _startedAt[slot]);
        Volatile.Write(ref _waiting[slot], false);
        Answered();
        Acked?.Invoke(readings, started, now, ack);
    }

    /// <summary>Gives the server back the window its DATA used, once a good part of it is used.</summary>
    private void GrantWindow(int used)
    {
        _receivedSinceUpdate += used;
        if (_receivedSinceUpdate < LargestWindow / 2)
        {
            return;
        }

        Span<byte> update = stackalloc byte[2 * (FrameHeaderBytes + 4)];
        WriteFrameHeader(update, 4, WindowUpdate, 0, 0);
        BinaryPrimitives.WriteUInt32BigEndian(update[FrameHeaderBytes..], (uint)_receivedSinceUpdate);
        WriteFrameHeader(update[(FrameHeaderBytes + 4)..], 4, WindowUpdate, 0, StreamId);
        BinaryPrimitives.WriteUInt32BigEndian(update[((2 * FrameHeaderBytes) + 4)..], (uint)_receivedSinceUpdate);
        Send(update);
        _receivedSinceUpdate = 0;
    }

    /// <summary>
    /// The status in the call's trailers, as far as a header block read without HPACK's tables shows it: the first time
    /// a connection sends <c>grpc-status</c> and <c>grpc-message</c>, both go as plain literals.
    /// </summary>
    private static string Status(ReadOnlySpan<byte> block)
    {
        var status = LiteralAfter(block, "grpc-status"u8);
        var message = LiteralAfter(block, "grpc-message"u8);
        return status is null ? "trailers without a readable grpc-status" : message is null ? $"grpc-status {status}" : $"grpc-status {status}: {Uri.UnescapeDataString(message)}";
    }

    private static string? LiteralAfter(ReadOnlySpan<byte> block, ReadOnlySpan<byte> name)
    {
        var at = block.IndexOf(name);
        if (at < 0 || at + name.Length >= block.Length)
        {
            return null;
        }

        var value = block[(at + name.Length)..];
        var length = value[0] & 0x7F;
        return (value[0] & 0x80) != 0 || length == 0x7F || value.Length < 1 + length ? null : Encoding.ASCII.GetString(value.Slice(1, length));
    }

    /// <summary>A header as an HPACK literal not indexed, with a new name, neither string Huffman-coded.</summary>
    private static int WriteHeader(byte[] block, int at, string name, string value)
    {
        block[at++] = 0x00;
        at = WriteString(block, at, name);
        return WriteString(block, at, value);
    }

    private static int WriteString(byte[] block, int at, string text)
    {
        // The length is an HPACK integer with a 7-bit prefix.
        var length = Encoding.ASCII.GetByteCount(text);
        if (length < 0x7F)
        {
            block[at++] = (byte)length;
        }
        else
        {
            block[at++] = 0x7F;
            for (length -= 0x7F; length >= 0x80; length >>= 7)
            {
                block[at++] = (byte)((length & 0x7F) | 0x80);
            }

            block[at++] = (byte)length;
        }

        return at + Encoding.ASCII.GetBytes(text, block.AsSpan(at));
    }

    private static void WriteFrameHeader(Span<byte> frame, int length, byte type, byte flags, int stream)
    {
        frame[0] = (byte)(length >> 16);
        frame[1] = (byte)(length >> 8);
        frame[2] = (byte)length;
        frame[3] = type;
        frame[4] = flags;
        BinaryPrimitives.WriteUInt32BigEndian(frame[5..], (uint)stream);
    }
}
