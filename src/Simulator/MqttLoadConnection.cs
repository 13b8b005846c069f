using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using Google.Protobuf;

namespace Telemetry.Simulator;

/// <summary>
/// A minimal MQTT 5 client for load: one connection that publishes at QoS 1 and matches each PUBACK to its publish by
/// packet id, subscribes, and takes messages in (answering QoS 1 ones). Each packet goes out in one send and one
/// receive loop reads whatever has arrived, with no objects made per message beyond the batch itself. A full client
/// costs the load generator tens of microseconds of CPU per message, which on a machine it shares with the server
/// is CPU the server does not get.
/// </summary>
/// <remarks>
/// It does not reconnect, resend or keep a session: a connection that drops ends with an exception, and what it had
/// in flight is reported unanswered. The Simulator's default client (MQTTnet) does all of that; this one is for
/// measuring throughput.
/// </remarks>
public sealed class MqttLoadConnection : LoadConnection
{
    // By packet id, 1 to the most publishes in flight: sized to the window, not to MQTT's 65,535 ids, as a fleet holds
    // thousands of connections.
    private readonly long[] _startedAt;
    private readonly int[] _readings;
    private readonly bool[] _waiting;
    private byte[] _send = new byte[1024];
    private readonly byte[] _acks = new byte[1024];
    private ushort _lastId;
    private TaskCompletionSource<byte>? _subscribed;

    private MqttLoadConnection(Socket socket, int maxInFlight)
        : base(socket)
    {
        _startedAt = new long[maxInFlight + 1];
        _readings = new int[maxInFlight + 1];
        _waiting = new bool[maxInFlight + 1];
    }

    /// <summary>A PUBACK came for a publish: its readings, when it was sent, when the answer came, and the reason code (below 0x80 is success).</summary>
    public Action<int, long, long, byte>? Acked { get; set; }

    /// <summary>A message came in on a subscription: its topic and payload, valid only during the call.</summary>
    public MessageHandler? MessageReceived { get; set; }

    public delegate void MessageHandler(ReadOnlySpan<byte> topic, ReadOnlySpan<byte> payload);

    protected override string InFlightName => "publishes";

    /// <summary>
    /// Connects and signs in with MQTT 5 (clean start, no keep-alive); throws when the server refuses. At most
    /// <paramref name="maxInFlight"/> publishes (1 to 65,535) may wait for their PUBACKs at once.
    /// </summary>
    public static async Task<MqttLoadConnection> ConnectAsync(string host, int port, string clientId, string? userName, string? password, int maxInFlight, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxInFlight, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxInFlight, ushort.MaxValue);
        return await ConnectAsync(
            host,
            port,
            socket => new MqttLoadConnection(socket, maxInFlight),
            (connection, token) => connection.SignInAsync(clientId, userName, password, token),
            cancellationToken);
    }

    /// <summary>Subscribes to <paramref name="topicFilter"/> at QoS 1; throws when the server refuses it.</summary>
    public async Task SubscribeAsync(string topicFilter, CancellationToken cancellationToken)
    {
        var filter = Encoding.UTF8.GetBytes(topicFilter);
        var packet = new byte[5 + 2 + 1 + 2 + filter.Length + 1];
        var length = 2 + 1 + 2 + filter.Length + 1;
        var at = WriteFixedHeader(packet, 0x82, length);
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(at), 1);
        packet[at + 2] = 0; // no properties
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(at + 3), (ushort)filter.Length);
        filter.CopyTo(packet, at + 5);
        packet[at + 5 + filter.Length] = 0x01; // QoS 1
        _subscribed = new TaskCompletionSource<byte>(TaskCreationOptions.RunContinuationsAsynchronously);
        Send(packet.AsSpan(0, at + length));
        var reason = await _subscribed.Task.WaitAsync(TimeSpan.FromSeconds(10), cancellationToken);
        if (reason >= 0x80)
        {
            throw new InvalidOperationException($"subscribing to {topicFilter} was refused: reason 0x{reason:x2}");
        }
    }

    /// <summary>
    /// Publishes <paramref name="payload"/> to <paramref name="topic"/> (UTF-8) at QoS 1, its PUBACK to be reported
    /// through <see cref="Acked"/> with <paramref name="readings"/> and the moment it was sent. Throws when the most
    /// publishes in flight are already waiting.
    /// </summary>
    /// <param name="intendedAt">When the publish was due to go (a <see cref="Stopwatch"/> timestamp), which its PUBACK is
    /// timed from: a pacer running late, or a publish held while the device's window was full, is part of the latency,
    /// not left out of it (now when null).</param>
    public void Publish(ReadOnlySpan<byte> topic, IMessage payload, int readings, long? intendedAt = null)
    {
        var payloadBytes = payload.CalculateSize();
        var length = 2 + topic.Length + 2 + 1 + payloadBytes;
        lock (SendLock)
        {
            if (_send.Length < 5 + length)
            {
                _send = new byte[Math.Max(5 + length, _send.Length * 2)];
            }

            if (InFlight >= _waiting.Length - 1)
            {
                throw new InvalidOperationException($"{InFlight} publishes are already waiting for their PUBACKs");
            }

            var id = NextId();
            var at = WriteFixedHeader(_send, 0x32, length);
            BinaryPrimitives.WriteUInt16BigEndian(_send.AsSpan(at), (ushort)topic.Length);
            topic.CopyTo(_send.AsSpan(at + 2));
            at += 2 + topic.Length;
            BinaryPrimitives.WriteUInt16BigEndian(_send.AsSpan(at), id);
            _send[at + 2] = 0; // no properties
            payload.WriteTo(_send.AsSpan(at + 3, payloadBytes));

            // Timed from when it was due, or from just before the send.
            _startedAt[id] = intendedAt ?? Stopwatch.GetTimestamp();
            _readings[id] = readings;
            Volatile.Write(ref _waiting[id], true);
            Sent();
            SendAll(_send.AsSpan(0, at + 3 + payloadBytes));
        }
    }

    /// <summary>DISCONNECT.</summary>
    protected override void SayGoodbye() => Send([0xE0, 0x00]);

    private ushort NextId()
    {
        // Called under the send lock with fewer than the most publishes waiting (a PUBACK frees its id before it counts
        // down), so a free id is found.
        do
        {
            _lastId = (ushort)(_lastId == _waiting.Length - 1 ? 1 : _lastId + 1);
        }
        while (Volatile.Read(ref _waiting[_lastId]));

        return _lastId;
    }

    private async Task SignInAsync(string clientId, string? userName, string? password, CancellationToken cancellationToken)
    {
        var client = Encoding.UTF8.GetBytes(clientId);
        var user = userName is null ? null : Encoding.UTF8.GetBytes(userName);
        var secret = password is null ? null : Encoding.UTF8.GetBytes(password);
        var length = 10 + 1 + 2 + client.Length + (user is null ? 0 : 2 + user.Length) + (secret is null ? 0 : 2 + secret.Length);
        var packet = new byte[5 + length];
        var at = WriteFixedHeader(packet, 0x10, length);
        ReadOnlySpan<byte> protocol = [0x00, 0x04, (byte)'M', (byte)'Q', (byte)'T', (byte)'T', 0x05];
        protocol.CopyTo(packet.AsSpan(at));
        at += protocol.Length;
        packet[at++] = (byte)(0x02 | (user is null ? 0 : 0x80) | (secret is null ? 0 : 0x40)); // clean start
        at += 2; // keep-alive 0: none
        packet[at++] = 0; // no properties
        at = WriteString(packet, at, client);
        if (user is not null)
        {
            at = WriteString(packet, at, user);
        }

        if (secret is not null)
        {
            at = WriteString(packet, at, secret);
        }

        Send(packet.AsSpan(0, at));

        // CONNACK: flags, reason code, properties.
        var read = 0;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(10));
        var connack = new byte[4_096];
        while (!TryReadPacket(connack.AsSpan(0, read), out _, out _, out _))
        {
            if (read == connack.Length)
            {
                throw new InvalidOperationException($"{clientId}: a CONNACK larger than {connack.Length} bytes");
            }

            var received = await Socket.ReceiveAsync(connack.AsMemory(read), SocketFlags.None, timeout.Token);
            if (received == 0)
            {
                throw new InvalidOperationException($"{clientId}: the server closed the connection before CONNACK");
            }

            read += received;
        }

        TryReadPacket(connack.AsSpan(0, read), out var type, out var body, out var consumed);
        if (type != 0x20 || body.Length < 2)
        {
            throw new InvalidOperationException($"{clientId}: expected CONNACK, got packet type 0x{type:x2}");
        }

        if (body[1] != 0)
        {
            throw new InvalidOperationException($"{clientId}: MQTT connect refused: reason 0x{body[1]:x2}");
        }

        if (consumed != read)
        {
            throw new InvalidOperationException($"{clientId}: the server sent more than CONNACK before the connection was used");
        }
    }

    protected override int Receive(ReadOnlySpan<byte> received, long now)
    {
        var taken = 0;
        var acksLength = 0;
        while (TryReadPacket(received[taken..], out var type, out var body, out var consumed))
        {
            var first = received[taken];
            taken += consumed;
            switch (type)
            {
                case 0x40:
                    OnPubAck(body, now);
                    break;
                case 0x30:
                    if (OnPublish(first, body) is { } id)
                    {
                        if (acksLength + 4 > _acks.Length)
                        {
                            Send(_acks.AsSpan(0, acksLength));
                            acksLength = 0;
                        }

                        _acks[acksLength] = 0x40;
                        _acks[acksLength + 1] = 0x02;
                        BinaryPrimitives.WriteUInt16BigEndian(_acks.AsSpan(acksLength + 2), id);
                        acksLength += 4;
                    }

                    break;
                case 0x90:
                    // SUBACK: packet id, properties, one reason code.
                    var propertiesAt = 2;
                    var properties = ReadVariableInt(body, ref propertiesAt);
                    _subscribed?.TrySetResult(body[propertiesAt + properties]);
                    break;
                case 0xE0:
                    throw new InvalidOperationException($"the server ended the connection: reason 0x{(body.Length > 0 ? body[0] : 0):x2}");
            }
        }

        // The PUBACKs for the messages taken in, in one send.
        if (acksLength > 0)
        {
            Send(_acks.AsSpan(0, acksLength));
        }

        return taken;
    }

    private void OnPubAck(ReadOnlySpan<byte> body, long now)
    {
        var id = BinaryPrimitives.ReadUInt16BigEndian(body);
        if (id >= _waiting.Length || !Volatile.Read(ref _waiting[id]))
        {
            return;
        }

        var started = _startedAt[id];
        var readings = _readings[id];
        Volatile.Write(ref _waiting[id], false);
        Answered();
        Acked?.Invoke(readings, started, now, body.Length > 2 ? body[2] : (byte)0);
    }

    /// <summary>Hands a message to <see cref="MessageReceived"/>; its packet id when it needs a PUBACK (QoS 1).</summary>
    private ushort? OnPublish(byte flags, ReadOnlySpan<byte> body)
    {
        var qos = (flags >> 1) & 0x03;
        var topicLength = BinaryPrimitives.ReadUInt16BigEndian(body);
        var at = 2 + topicLength;
        ushort? id = null;
        if (qos > 0)
        {
            id = BinaryPrimitives.ReadUInt16BigEndian(body[at..]);
            at += 2;
        }

        var properties = ReadVariableInt(body, ref at);
        at += properties;
        MessageReceived?.Invoke(body.Slice(2, topicLength), body[at..]);
        return qos == 1 ? id : null;
    }

    /// <summary>A whole packet at the start of <paramref name="buffer"/>: its type (high nibble), body and size; false when it has not all arrived.</summary>
    private static bool TryReadPacket(ReadOnlySpan<byte> buffer, out byte type, out ReadOnlySpan<byte> body, out int consumed)
    {
        type = 0;
        body = default;
        consumed = 0;
        var length = 0;
        var at = 1;
        for (var shift = 0; ; shift += 7)
        {
            if (at >= buffer.Length)
            {
                return false;
            }

            var digit = buffer[at++];
            length |= (digit & 0x7F) << shift;
            if ((digit & 0x80) == 0)
            {
                break;
            }

            if (shift >= 21)
            {
                throw new InvalidOperationException("a malformed remaining length");
            }
        }

        if (buffer.Length - at < length)
        {
            return false;
        }

        type = (byte)(buffer[0] & 0xF0);
        body = buffer.Slice(at, length);
        consumed = at + length;
        return true;
    }

    private static int ReadVariableInt(ReadOnlySpan<byte> buffer, ref int at)
    {
        var value = 0;
        for (var shift = 0; shift <= 21; shift += 7)
        {
            var digit = buffer[at++];
            value |= (digit & 0x7F) << shift;
            if ((digit & 0x80) == 0)
            {
                return value;
            }
        }

        throw new InvalidOperationException("a malformed variable byte integer");
    }

    private static int WriteFixedHeader(byte[] packet, byte first, int length)
    {
        packet[0] = first;
        var at = 1;
        do
        {
            var digit = (byte)(length % 128);
            length /= 128;
            packet[at++] = length > 0 ? (byte)(digit | 0x80) : digit;
        }
        while (length > 0);

        return at;
    }

    private static int WriteString(byte[] packet, int at, byte[] value)
    {
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(at), (ushort)value.Length);
        value.CopyTo(packet, at + 2);
        return at + 2 + value.Length;
    }
}
