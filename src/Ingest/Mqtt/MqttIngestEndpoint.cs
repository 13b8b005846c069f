using System.Buffers;
using System.Collections.Concurrent;
using System.Net;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using MQTTnet.Formatter;
using MQTTnet.Packets;
using MQTTnet.Protocol;
using MQTTnet.Server;
using Telemetry.Core;
using Telemetry.Core.Devices;
using Telemetry.Core.Readings;
using Telemetry.Core.Storage;
using Telemetry.Ingest.Codecs;
using Telemetry.Ingest.Pipeline;

namespace Telemetry.Ingest.Mqtt;

/// <summary>
/// The MQTT front door, on the broker hosted in Kestrel. A device connects with its id as client id and username and
/// its token as password, or with a client certificate that names it; it may publish only to
/// <c>devices/{deviceId}/vitals</c> and subscribe only to its patient's alerts. A QoS 1 PUBACK leaves only after the
/// batch is committed; a reading is never relayed to other clients. An MQTT 5 connection's QoS 1 publishes are read and
/// queued for commit while the ones before them commit (up to <see cref="IngestOptions.MaxInFlightPublishesPerConnection"/>),
/// and their PUBACKs leave in order as the commits complete; what else the broker sends on that connection (its
/// patient's alerts, PINGRESP) leaves in turn after the PUBACKs made before it.
/// </summary>
public sealed partial class MqttIngestEndpoint(
    DeviceAuthenticator authenticator,
    DeviceCertificates certificates,
    MqttPayloadIngest payloads,
    CommitPipeline pipeline,
    IngestInstruments instruments,
    DeviceRejectLog rejectLog,
    DeviceRateLimiter rateLimiter,
    IOptions<IngestOptions> options,
    IAuditTrail audit,
    ILogger<MqttIngestEndpoint> logger)
{
    public const string Protocol = "mqtt";

    private const string IdentityItem = "telemetry.device";
    private const string ProtocolVersionItem = "telemetry.protocol-version";
    private const string TopicAliasesItem = "telemetry.topic-aliases";

    // The connection's own state in its session's items (see ConnectionState).
    private const string ConnectionItem = "telemetry.connection";

    // The topic of a publish by an alias given a topic not the device's own (not kept): never a device's vitals topic.
    private const string ForeignAliasTopic = "(a topic alias given another topic)";

    /// <summary>The most topic alias numbers a connection may give its vitals topic (it needs one).</summary>
    private const int MaxTopicAliases = 16;

    private MqttServer? _server;
    private int _inFlight;

    // Per MQTT 5 connection (the broker's token for it), its PUBACKs made before their publishes were committed; and
    // how many of those, over every connection, have not left yet.
    private readonly ConcurrentDictionary<CancellationToken, PendingAcks> _pendingAcks = new();
    private long _owedAcks;
    private volatile bool _draining;

    // Each device's latest sign-in, from its validation to its connection: a connection with Clean Start 0 that takes an
    // open one over goes on in that one's session, whose items hold the older sign-in (and MQTTnet drops the items the
    // newer one's validation filled). One entry per device at most, taken as it connects.
    private readonly ConcurrentDictionary<string, DeviceIdentity> _signingIn = new(StringComparer.Ordinal);

    /// <summary>True once the broker has started and the handlers are in place.</summary>
    public bool IsListening { get; private set; }

    public void Attach(MqttServer server)
    {
        _server = server;
        server.ValidatingConnectionAsync += ValidateConnectionAsync;
        server.InterceptingPublishAsync += InterceptPublishAsync;
        server.InterceptingOutboundPacketAsync += InterceptOutboundAsync;
        server.InterceptingInboundPacketAsync += InterceptInboundAsync;
        server.InterceptingSubscriptionAsync += InterceptSubscriptionAsync;
        server.ClientConnectedAsync += args =>
        {
            // Set here, after the session is chosen: a session taken over from an older connection keeps its items.
            // Topic aliases are the connection's, not the session's.
            args.SessionItems[ProtocolVersionItem] = args.ProtocolVersion;
            args.SessionItems.Remove(TopicAliasesItem);
            var connection = new ConnectionState(args.RemoteEndPoint);
            args.SessionItems[ConnectionItem] = connection;
            if (_signingIn.TryRemove(args.ClientId, out var signedIn))
            {
                args.SessionItems[IdentityItem] = signedIn;
            }

            instruments.DeviceConnected(Protocol);
            if (args.SessionItems[IdentityItem] is DeviceIdentity device)
            {
                // The client is registered now, so a rotation or revocation from here on ends it; one that raced the
                // sign-in is caught by this check.
                _ = EndIfOutdatedAsync(device, connection);
            }

            return Task.CompletedTask;
        };
        server.ClientDisconnectedAsync += args =>
        {
            // Only the state of the connection that ended: a session taken over holds its successor's by the time the
            // older connection's end may be reported (which would turn the successor's own credential check off).
            if (args.SessionItems?[ConnectionItem] is ConnectionState ended && ended.IsFrom(args.RemoteEndPoint))
            {
                ended.Ended = true;
            }

            if (args.SessionItems?.Contains(IdentityItem) == true)
            {
                instruments.DeviceDisconnected(Protocol);
            }

            return Task.CompletedTask;
        };
        server.StartedAsync += _ =>
        {
            IsListening = true;
            return Task.CompletedTask;
        };
        server.StoppedAsync += _ =>
        {
            IsListening = false;
            return Task.CompletedTask;
        };
    }

    /// <summary>
    /// Ends the device's live MQTT connection, if it has one, with <paramref name="code"/> and <paramref name="reason"/>
    /// in the DISCONNECT an MQTT 5 device reads; false when it had none. A publish still in flight gets no PUBACK, so the
    /// device resends it, and the batch's sequence keeps it from being stored twice. (The broker keeps no session after
    /// a disconnect, so no alerts queue for the device afterwards.)
    /// </summary>
    public async Task<bool> DisconnectAsync(string deviceId, MqttDisconnectReasonCode code, string reason)
    {
        if (_server is not { IsStarted: true } server)
        {
            return false;
        }

        try
        {
            // Looked up by id: listing every client would cost a status object per connection, for each device a drain ends.
            await server.DisconnectClientAsync(deviceId, new MqttServerClientDisconnectOptions { ReasonCode = code, ReasonString = reason });
            return true;
        }
        catch (InvalidOperationException)
        {
            // It had left meanwhile, or the broker is stopping.
            return false;
        }
    }

    private async Task EndIfOutdatedAsync(DeviceIdentity device, ConnectionState connection)
    {
        try
        {
            // Only while this connection lasts: the device's id may be another connection's by then (the device came
            // back with its new token), which is not ended for the old one.
            if (!await authenticator.IsCurrentAsync(device) && !connection.Ended)
            {
                instruments.AuthenticationFailed(Protocol);
                await DisconnectAsync(device.DeviceId, MqttDisconnectReasonCode.NotAuthorized, "the device's token was rotated or revoked while it connected");
            }
        }
        catch (Exception exception)
        {
            LogCredentialCheckFailed(logger, exception, device.DeviceId);
        }
    }

    private async Task ValidateConnectionAsync(ValidatingConnectionEventArgs args)
    {
        DeviceIdentity? identity;
        try
        {
            identity = args.ClientCertificate is { } certificate && certificates.Enabled
                ? await AuthenticateCertificateAsync(args, certificate)
                : await AuthenticateTokenAsync(args);
        }
        catch (DeviceRegistryUnavailableException exception)
        {
            // Not the device's fault: "server unavailable" (3.1.1: code 3), so it tries again later.
            args.ReasonCode = MqttConnectReasonCode.ServerUnavailable;
            args.ReasonString = exception.Message;
            LogSignInUnavailable(logger, exception.InnerException!, Protocol);
            return;
        }
        catch (DeviceSignInsHeldException exception)
        {
            // MQTT 5's own answer for it; 3.1.1 has none closer than "server unavailable" (code 3), so it tries again later.
            args.ReasonCode = args.ProtocolVersion == MqttProtocolVersion.V500 ? MqttConnectReasonCode.ConnectionRateExceeded : MqttConnectReasonCode.ServerUnavailable;
            args.ReasonString = exception.Message;
            instruments.SignInHeld(Protocol);
            return;
        }

        if (identity is null)
        {
            return;
        }

        // One session per device: the client id is the device id, so a second connection takes the first over and no
        // device can take over another device's session.
        if (!string.Equals(args.ClientId, identity.DeviceId, StringComparison.Ordinal))
        {
            Refuse(args, MqttConnectReasonCode.ClientIdentifierNotValid, "the client id must be the device id", identity.DeviceId);
            return;
        }

        args.SessionItems[IdentityItem] = identity;
        _signingIn[identity.DeviceId] = identity;
        LogDeviceConnected(logger, identity.DeviceId, args.ProtocolVersion);
    }

    private async Task<DeviceIdentity?> AuthenticateTokenAsync(ValidatingConnectionEventArgs args)
    {
        if (string.IsNullOrEmpty(args.UserName) || string.IsNullOrEmpty(args.Password))
        {
            Refuse(args, MqttConnectReasonCode.BadUserNameOrPassword, "username (device id) and password (device token) are required");
            return null;
        }

        var identity = await authenticator.AuthenticateAsync(args.Password, args.UserName, AddressOf(args));
        if (identity is null)
        {
            Refuse(args, MqttConnectReasonCode.BadUserNameOrPassword, "unknown device or wrong token");
        }

        return identity;
    }

    /// <summary>
    /// A device with a client certificate (checked once more here, whatever the listener did) needs no token; a
    /// username, when sent, must be the certificate's device, and a password, when sent, that device's token.
    /// </summary>
    private async Task<DeviceIdentity?> AuthenticateCertificateAsync(ValidatingConnectionEventArgs args, System.Security.Cryptography.X509Certificates.X509Certificate2 certificate)
    {
        if (!certificates.TryIdentify(certificate, out var deviceId, out var problem))
        {
            Refuse(args, MqttConnectReasonCode.BadAuthenticationMethod, problem);
            return null;
        }

        if (!string.IsNullOrEmpty(args.UserName) && !string.Equals(args.UserName, deviceId, StringComparison.Ordinal))
        {
            Refuse(args, MqttConnectReasonCode.BadUserNameOrPassword, "the username must be the device the certificate names", deviceId);
            return null;
        }

        var identity = string.IsNullOrEmpty(args.Password)
            ? await authenticator.AuthenticateCertificateAsync(deviceId)
            : await authenticator.AuthenticateAsync(args.Password, deviceId, AddressOf(args));
        if (identity is null)
        {
            Refuse(args, MqttConnectReasonCode.NotAuthorized, "the certificate's device is unknown or revoked, or the token is wrong", deviceId);
        }

        return identity;
    }

    private static System.Net.IPAddress? AddressOf(ValidatingConnectionEventArgs args) => (args.RemoteEndPoint as System.Net.IPEndPoint)?.Address;

    private void Refuse(ValidatingConnectionEventArgs args, MqttConnectReasonCode code, string reason, string? deviceId = null)
    {
        args.ReasonCode = code;
        args.ReasonString = reason;
        instruments.AuthenticationFailed(Protocol);

        // The username may be a token pasted into the wrong field: it is logged only when it cannot hold a secret.
        LogConnectionRefused(logger, deviceId ?? (Identifier.IsValid(args.UserName) && !DeviceToken.MayHoldSecret(args.UserName) ? args.UserName : "(not a device id)"), reason);
    }

    private async Task InterceptPublishAsync(InterceptingPublishEventArgs args)
    {
        if (MqttAlertRelay.IsFromServer(args))
        {
            // The server's own alert messages go to their subscribers.
            return;
        }

        // Readings are for Telemetry alone: never routed on to other subscribers.
        args.ProcessPublish = false;

        // A publish the broker makes itself for a client comes with no connection's token: its will, published when the
        // connection ends without a DISCONNECT (a revocation or rotation ending it, a lost link). Not stored: its
        // readings would be a revoked token's, or a message written when the device connected, sent whenever it drops.
        if (!args.CancellationToken.CanBeCanceled)
        {
            instruments.PayloadRejected(Protocol, "will");
            LogWillRefused(logger, args.ClientId);
            if (args.SessionItems?[IdentityItem] is DeviceIdentity device)
            {
                rejectLog.Record(device.DeviceId, Protocol, "a will message (published by the broker as the connection ended) is not stored: a device's readings are taken from its own publishes only");
            }

            return;
        }

        // Counted before the drain flag is read, so a drain waits for every publish that got past it.
        Interlocked.Increment(ref _inFlight);
        Task<PublishAnswer>? answer = null;
        try
        {
            var acks = args.SessionItems?[ProtocolVersionItem] is MqttProtocolVersion.V500 ? PendingAcksOf(args.CancellationToken) : null;
            if (_draining || args.CancellationToken.IsCancellationRequested)
            {
                // Every device hears the same during a drain: DISCONNECT 0x8B, once the PUBACKs it is owed have left, and
                // no PUBACK for this publish, which it sends again after reconnecting. (The DISCONNECT is sent at once;
                // the broker's own close after the interceptor sends no second one.) A connection already ending (taken
                // over by the device's next one) makes no PUBACK either.
                if (_draining)
                {
                    instruments.PayloadRejected(Protocol, "shutting_down");
                    if (acks is not null)
                    {
                        await acks.WaitUntilPaidAsync();
                    }

                    await DisconnectAsync(args.ClientId, MqttDisconnectReasonCode.ServerShuttingDown, ShuttingDown);
                }

                args.CloseConnection = true;
                return;
            }

            answer = AnswerAsync(args);
            if (acks is null || args.ApplicationMessage.QualityOfServiceLevel != MqttQualityOfServiceLevel.AtLeastOnce
                || answer.IsCompleted || pipeline.IsFull)
            {
                // Answered before the broker makes its PUBACK. With the commit queue full, the connection is not read on
                // until this publish is committed: the device is held back rather than its publishes queued in the server.
                var decided = await answer;
                if (decided.Close || args.CancellationToken.IsCancellationRequested)
                {
                    args.CloseConnection = true;
                    return;
                }

                args.Response.ReasonCode = decided.Code;
                args.Response.ReasonString = decided.Reason;
                if (decided.Stored)
                {
                    instruments.AckSent(Protocol);
                }

                return;
            }

            // The broker goes on reading the connection while this publish commits. Its PUBACK is made now, marked as
            // owed an answer, and waits in the connection's send loop for it (see SendAnswerAsync), so PUBACKs leave in
            // the order the publishes came. The connection is read on while fewer than the limit are owed.
            args.Response.ReasonCode = MqttPubAckReasonCode.UnspecifiedError;
            args.Response.ReasonString = acks.Owe(answer);
            await acks.WaitForRoomAsync(options.Value.MaxInFlightPublishesPerConnection);
            if (args.CancellationToken.IsCancellationRequested)
            {
                // Taken over while waiting: the session's packets go to the device's next connection now, which does
                // not send this one's PUBACK (see SendAnswerAsync); none is made.
                args.CloseConnection = true;
            }
        }
        finally
        {
            // Once the answer is asked for, it counts itself out when decided.
            if (answer is null)
            {
                Interlocked.Decrement(ref _inFlight);
            }
        }
    }

    /// <summary>The PUBACKs owed answers on the connection of <paramref name="connection"/>, the broker's token for it.</summary>
    private PendingAcks? PendingAcksOf(CancellationToken connection)
    {
        if (!connection.CanBeCanceled)
        {
            // No token to tell the connection by (nor its end): answered one publish at a time.
            return null;
        }

        if (_pendingAcks.TryGetValue(connection, out var acks))
        {
            return acks;
        }

        acks = _pendingAcks.GetOrAdd(connection, static (token, endpoint) => new PendingAcks(endpoint), this);
        acks.ForgetWhenEnded(connection, _pendingAcks);
        return acks;
    }

    /// <summary>
    /// Topic aliases, taken here rather than by the broker. The broker's CONNACK offers 65,535 of them and it keeps,
    /// per connection, every topic a publish names by one (a device could fill the server's memory with them); a
    /// device writes to one topic. So the aliases a connection gives its own vitals topic are kept here, as numbers
    /// (at most <see cref="MaxTopicAliases"/>), and every publish reaches the broker with its topic and no alias. An
    /// alias given another topic is noted as such, without its topic: that publish, and each later one by the alias, is
    /// refused as to the wrong topic (0x87), as without an alias. One never given a topic on this connection, or one
    /// past the limit, ends the connection with DISCONNECT 0x94.
    /// </summary>
    private Task InterceptInboundAsync(InterceptingPacketEventArgs args)
    {
        if (args.Packet is not MqttPublishPacket publish)
        {
            return Task.CompletedTask;
        }

        if (publish.QualityOfServiceLevel != MqttQualityOfServiceLevel.AtMostOnce && args.SessionItems?[ConnectionItem] is ConnectionState connection)
        {
            connection.PacketId = publish.PacketIdentifier;
        }

        if (publish.TopicAlias == 0)
        {
            return Task.CompletedTask;
        }

        if (args.SessionItems?[IdentityItem] is not DeviceIdentity device)
        {
            return RefuseTopicAlias(args, "not authenticated");
        }

        var alias = publish.TopicAlias;
        var aliases = args.SessionItems[TopicAliasesItem] as TopicAliases;
        if (!string.IsNullOrEmpty(publish.Topic))
        {
            var own = MqttTopics.IsDeviceVitals(publish.Topic, device.DeviceId);
            if ((own ? aliases?.Numbers : aliases?.Foreign)?.Contains(alias) is not true)
            {
                aliases ??= new TopicAliases(MqttTopics.DeviceVitals(device.DeviceId));
                if (aliases.Numbers.Count + aliases.Foreign.Count == MaxTopicAliases)
                {
                    return RefuseTopicAlias(args, $"at most {MaxTopicAliases} topic aliases a connection");
                }

                (own ? aliases.Foreign : aliases.Numbers).Remove(alias);
                (own ? aliases.Numbers : aliases.Foreign).Add(alias);
                args.SessionItems[TopicAliasesItem] = aliases;
            }
        }
        else if (aliases?.Numbers.Contains(alias) is true)
        {
            publish.Topic = aliases.Topic;
        }
        else if (aliases?.Foreign.Contains(alias) is true)
        {
            // Refused as to the wrong topic by the publish check, as it was when the alias was given its topic.
            publish.Topic = ForeignAliasTopic;
        }
        else
        {
            return RefuseTopicAlias(args, $"topic alias {alias} was not given a topic on this connection");
        }

        publish.TopicAlias = 0;
        return Task.CompletedTask;
    }

    private Task RefuseTopicAlias(InterceptingPacketEventArgs args, string reason)
    {
        args.ProcessPacket = false;
        instruments.PayloadRejected(Protocol, "topic_alias");
        return DisconnectAsync(args.ClientId, MqttDisconnectReasonCode.TopicAliasInvalid, reason);
    }

    /// <summary>
    /// A connection's own state, kept in its session's items from its CONNACK on (a session resumed by the device's next
    /// connection gets that connection's).
    /// </summary>
    private sealed class ConnectionState(EndPoint? remoteEndPoint)
    {
        /// <summary>
        /// The packet identifier of the QoS 1 publish the connection is reading: noted as the packet comes in, read as
        /// its publish is checked (MQTTnet reads a connection's packets one at a time, each through both before the
        /// next), for telling a resend of it from a new message with the same payload (see <see cref="SenMlResendClock"/>).
        /// </summary>
        public ushort PacketId { get; set; }

        /// <summary>Whether the connection has ended (the device may be connected again by another).</summary>
        public volatile bool Ended;

        // Which of the connection's subscriptions the audit log has: its own patient's alerts, and the first few of
        // other patients' it was refused (a connection's packets are read one at a time: no lock).
        private const int MaxRefusedSubscriptionsRecorded = 8;
        private bool _ownAlertsRecorded;
        private HashSet<string>? _refusedRecorded;

        /// <summary>Whether a subscription to <paramref name="topic"/> (a patient's alerts) is to be recorded in the audit log.</summary>
        public bool ShouldRecordSubscription(string topic, bool own) =>
            own ? !_ownAlertsRecorded : _refusedRecorded is not { } refused || (refused.Count < MaxRefusedSubscriptionsRecorded && !refused.Contains(topic));

        public void SubscriptionRecorded(string topic, bool own)
        {
            if (own)
            {
                _ownAlertsRecorded = true;
            }
            else
            {
                (_refusedRecorded ??= new HashSet<string>(StringComparer.Ordinal)).Add(topic);
            }
        }

        /// <summary>
        /// Whether this is the state of the connection from <paramref name="endPoint"/>: two connections of one device
        /// open at once come from two addresses or ports, and one without an address (none known) is taken for this one.
        /// </summary>
        public bool IsFrom(EndPoint? endPoint) => remoteEndPoint is null || endPoint is null || remoteEndPoint.Equals(endPoint);
    }

    /// <summary>The topic alias numbers a connection gave its device's vitals topic, and those it gave other topics.</summary>
    private sealed class TopicAliases(string topic)
    {
        public string Topic { get; } = topic;

        public HashSet<ushort> Numbers { get; } = [];

        public HashSet<ushort> Foreign { get; } = [];
    }

    private Task InterceptOutboundAsync(InterceptingPacketEventArgs args)
    {
        if (args.Packet is MqttPubAckPacket puback && PendingAcks.IsOwed(puback.ReasonString))
        {
            return SendAnswerAsync(args, puback);
        }

        if (args.Packet is MqttConnAckPacket connack)
        {
            // What this broker takes, said as MQTT 5 lets it be said (MQTTnet's own CONNACK offers 65,535 aliases, names
            // no packet size and no receive maximum, which a client reads as 65,535): a client that keeps to it is never
            // disconnected for aliases or size, and never has a publish waiting unread behind the ones in flight.
            connack.TopicAliasMaximum = MaxTopicAliases;
            connack.MaximumPacketSize = (uint)(options.Value.MaxMessageBytes + MqttPacketSizeGuard.PacketOverheadBytes);
            connack.ReceiveMaximum = (ushort)options.Value.MaxInFlightPublishesPerConnection;
        }

        return Task.CompletedTask;
    }

    /// <summary>
    /// A PUBACK made before its publish was committed, about to leave: waits for the publish's answer and writes it into
    /// the PUBACK. One not owed on this connection (its own ended, taken over by the device's next one, whose send loop
    /// now sends the session's packets) is not sent: no ack ever leaves before its batch is committed, nor with another
    /// publish's answer.
    /// </summary>
    private async Task SendAnswerAsync(InterceptingPacketEventArgs args, MqttPubAckPacket puback)
    {
        var marker = puback.ReasonString!;
        if (!_pendingAcks.TryGetValue(args.CancellationToken, out var acks) || acks.Find(marker) is not { } answer)
        {
            args.ProcessPacket = false;
            return;
        }

        try
        {
            var decided = await answer;
            if (decided.Close)
            {
                // The connection dropped while the batch committed: its token is cancelled, so the connection's owed
                // PUBACKs are forgotten and none after this one is found either; the device publishes them again.
                args.ProcessPacket = false;
                return;
            }

            puback.ReasonCode = decided.Code;
            puback.ReasonString = decided.Reason;
            if (decided.Stored)
            {
                instruments.AckSent(Protocol);
            }
        }
        finally
        {
            acks.Paid(marker);
        }
    }

    /// <summary>
    /// Handles a publish and decides its PUBACK; counted as in flight until then. Never faults. The wait for the commit
    /// is its one asynchronous step: the checks and the decoding before it are synchronous (an async method per step
    /// would allocate its state machine for every publish).
    /// </summary>
    private async Task<PublishAnswer> AnswerAsync(InterceptingPublishEventArgs args)
    {
        try
        {
            if (!TrySubmit(args, out var refusal, out var pending))
            {
                return refusal;
            }

            MqttPayloadAnswer answer;
            try
            {
                answer = payloads.Committed(pending, await pending.Commit);
            }
            catch (StoreUnavailableException exception)
            {
                answer = payloads.Unavailable(exception);
            }

            return Decide(args, answer);
        }
        catch (OperationCanceledException) when (args.CancellationToken.IsCancellationRequested)
        {
            // The connection ended while the batch was committing: there is no one to answer, and the device sends again
            // what had no PUBACK.
            return PublishAnswer.CloseInstead;
        }
        catch (Exception exception)
        {
            // Nothing unexpected may leave the handler (MQTTnet would drop the connection without a word), and
            // nothing here was committed: refuse in a way the device cannot mistake for an ack.
            LogPublishFailed(logger, exception);
            return RefuseUncommitted(args, MqttPubAckReasonCode.UnspecifiedError, "the server could not take this message; publish again", "error");
        }
        finally
        {
            Interlocked.Decrement(ref _inFlight);
        }
    }

    private static readonly TimeSpan SendLoopGrace = TimeSpan.FromMilliseconds(100);

    private const string ShuttingDown = "the server is shutting down; reconnect shortly and publish again what has no ack";

    /// <summary>
    /// For shutdown: takes no new connections and no new publishes, waits up to <paramref name="timeout"/> for the
    /// publishes being committed to be acked, then tells every device to reconnect (DISCONNECT 0x8B, server shutting
    /// down). Returns how many devices were connected.
    /// </summary>
    public async Task<int> DrainAsync(TimeSpan timeout, TimeProvider clock, CancellationToken cancellationToken)
    {
        _draining = true;
        if (_server is not { IsStarted: true } server)
        {
            return 0;
        }

        server.AcceptNewConnections = false;
        var started = clock.GetTimestamp();
        while ((Volatile.Read(ref _inFlight) > 0 || Volatile.Read(ref _owedAcks) > 0) && clock.GetElapsedTime(started) < timeout)
        {
            await Task.Delay(10, cancellationToken);
        }

        // A publish counts itself out as its answer is decided, and an owed PUBACK as it is handed to the connection's
        // send loop: both a moment before the PUBACK is written. The DISCONNECTs wait that moment, so that they do not
        // end a send loop with a PUBACK still in its queue (the device would send that publish again, a duplicate).
        await Task.Delay(SendLoopGrace, cancellationToken);

        // Many at once: a device that does not read its socket holds its own DISCONNECT (up to the broker's
        // communication timeout), not every other device's.
        var clients = await server.GetClientsAsync();
        await Parallel.ForEachAsync(
            clients,
            new ParallelOptions { MaxDegreeOfParallelism = 64 },
            async (client, _) => await TryDisconnectAsync(client, MqttDisconnectReasonCode.ServerShuttingDown, ShuttingDown));
        return clients.Count;
    }

    /// <summary>Sends the client a DISCONNECT with a reason and closes it; false when it had left meanwhile (or the broker is stopping).</summary>
    private static async Task<bool> TryDisconnectAsync(MqttClientStatus client, MqttDisconnectReasonCode code, string reason)
    {
        try
        {
            await client.DisconnectAsync(new MqttServerClientDisconnectOptions { ReasonCode = code, ReasonString = reason });
            return true;
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }

    /// <summary>Checks a publish and hands its payload to the commit pipeline, or refuses it (false).</summary>
    private bool TrySubmit(InterceptingPublishEventArgs args, out PublishAnswer refusal, out PendingPayload pending)
    {
        pending = default;
        if (args.SessionItems?[IdentityItem] is not DeviceIdentity device)
        {
            refusal = Answer(args, MqttPubAckReasonCode.NotAuthorized, "not authenticated", "unauthenticated");
            return false;
        }

        if (!MqttTopics.IsDeviceVitals(args.ApplicationMessage.Topic, device.DeviceId))
        {
            // A 3.1.1 device would read a refusing PUBACK as success and drop its data: it is disconnected instead.
            refusal = RefuseUncommitted(args, MqttPubAckReasonCode.NotAuthorized, $"a device publishes only to {MqttTopics.DeviceVitals(device.DeviceId)}", "topic");
            return false;
        }

        if (!rateLimiter.TryTakeMessage(device.DeviceId))
        {
            refusal = RefuseUncommitted(args, MqttPubAckReasonCode.QuotaExceeded,
                $"more than {options.Value.MaxMessagesPerSecondPerDevice} messages a second; batch readings or slow down", "rate_limited");
            return false;
        }

        var message = args.ApplicationMessage;
        var resendable = message.QualityOfServiceLevel != MqttQualityOfServiceLevel.AtMostOnce;
        var packetId = resendable && args.SessionItems[ConnectionItem] is ConnectionState connection ? connection.PacketId : (ushort)0;
        if (!payloads.TrySubmit(device, message.Payload, resendable, sentAgain: resendable && message.Dup, packetId, args.CancellationToken, out var answer, out pending))
        {
            refusal = Decide(args, answer);
            return false;
        }

        refusal = default;
        return true;
    }

    /// <summary>The PUBACK for a payload's answer.</summary>
    private PublishAnswer Decide(InterceptingPublishEventArgs args, MqttPayloadAnswer answer)
    {
        switch (answer.Verdict)
        {
            case MqttPayloadVerdict.Stored:
                return new PublishAnswer(MqttPubAckReasonCode.Success, answer.Reason, Stored: true);
            case MqttPayloadVerdict.StoreUnavailable:
                // Not stored: the device must send it again, which a 3.1.1 device does only after a reconnect.
                return RefuseUncommitted(args, answer.Code, answer.Reason!, metricReason: null);
            default:
                return new PublishAnswer(answer.Code, answer.Reason);
        }
    }

    private PublishAnswer Answer(InterceptingPublishEventArgs args, MqttPubAckReasonCode code, string reason, string metricReason)
    {
        instruments.PayloadRejected(Protocol, metricReason);
        if (args.SessionItems?[IdentityItem] is DeviceIdentity device && metricReason != "all_rejected")
        {
            rejectLog.Record(device.DeviceId, Protocol, reason);
        }

        return new PublishAnswer(code, reason);
    }

    /// <summary>
    /// Refuses a message that was not stored and that the device should send again (or fix). An MQTT 3.1.1 PUBACK cannot
    /// carry an error and would read as success, so a 3.1.1 device is disconnected instead and resends on reconnect.
    /// </summary>
    private PublishAnswer RefuseUncommitted(InterceptingPublishEventArgs args, MqttPubAckReasonCode code, string reason, string? metricReason)
    {
        if (metricReason is not null)
        {
            instruments.PayloadRejected(Protocol, metricReason);
        }

        // Logged whichever the protocol: a 3.1.1 device, disconnected without a reason, finds it only there.
        if (metricReason is not null && args.SessionItems?[IdentityItem] is DeviceIdentity device)
        {
            rejectLog.Record(device.DeviceId, Protocol, reason);
        }

        return args.SessionItems?[ProtocolVersionItem] is not MqttProtocolVersion.V500
            ? PublishAnswer.CloseInstead
            : new PublishAnswer(code, reason);
    }

    private async Task InterceptSubscriptionAsync(InterceptingSubscriptionEventArgs args)
    {
        var topic = args.TopicFilter.Topic;
        var device = args.SessionItems?[IdentityItem] as DeviceIdentity;
        var own = device is not null && topic == MqttTopics.PatientAlerts(device.PatientId);
        var patient = device is null ? null : own ? device.PatientId : MqttTopics.PatientOfAlerts(topic);

        // A subscription reads the patient's alerts from then on: recorded, as an alert stream is as it opens, once a
        // connection; one refused that named another patient's alerts, with that patient, as a refused request is (the
        // first few a connection makes: a device subscribing in a loop does not fill the log). A filter that names no
        // patient reads nobody's record.
        if (device is not null && patient is not null && args.SessionItems?[ConnectionItem] is ConnectionState connection && connection.ShouldRecordSubscription(topic, own))
        {
            try
            {
                await audit.RecordAsync("device:" + device.DeviceId, "none", patient, $"MQTT SUBSCRIBE {topic}", own ? 200 : 403);
                connection.SubscriptionRecorded(topic, own);
            }
            catch (Exception exception)
            {
                LogSubscriptionNotRecorded(logger, exception, device.DeviceId, topic);
                if (own)
                {
                    // Nothing is read unrecorded. (One refused anyway is refused as it would have been.)
                    args.ProcessSubscription = false;
                    args.Response.ReasonCode = MqttSubscribeReasonCode.UnspecifiedError;
                    args.Response.ReasonString = "the subscription could not be recorded in the audit log; subscribe again later";
                    return;
                }
            }
        }

        if (!own)
        {
            args.ProcessSubscription = false;
            args.Response.ReasonCode = MqttSubscribeReasonCode.NotAuthorized;
            args.Response.ReasonString = "a device may subscribe only to its own patient's alerts";
        }
    }

    [LoggerMessage(EventId = 1111, Level = LogLevel.Error, Message = "Device {DeviceId}'s subscription to {Topic} could not be recorded in the audit log; it is refused")]
    private static partial void LogSubscriptionNotRecorded(ILogger logger, Exception exception, string deviceId, string topic);

    [LoggerMessage(EventId = 1101, Level = LogLevel.Debug, Message = "Device {DeviceId} connected over MQTT {ProtocolVersion}")]
    private static partial void LogDeviceConnected(ILogger logger, string deviceId, MqttProtocolVersion protocolVersion);

    [LoggerMessage(EventId = 1104, Level = LogLevel.Warning, Message = "Checking that device {DeviceId}'s credentials are still current failed")]
    private static partial void LogCredentialCheckFailed(ILogger logger, Exception exception, string deviceId);

    [LoggerMessage(EventId = 1103, Level = LogLevel.Error, Message = "An MQTT publish could not be handled; it was refused, not acknowledged")]
    private static partial void LogPublishFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 1110, Level = LogLevel.Warning, Message = "A device's {Protocol} sign-in could not be checked: the device registry did not answer")]
    private static partial void LogSignInUnavailable(ILogger logger, Exception exception, string protocol);

    [LoggerMessage(EventId = 1105, Level = LogLevel.Information, Message = "The will of {Device}'s MQTT connection, published as it ended, was not stored: a device's readings are taken from its own publishes only")]
    private static partial void LogWillRefused(ILogger logger, string device);

    [LoggerMessage(EventId = 1102, Level = LogLevel.Information, Message = "MQTT connection of {Device} refused: {Reason}")]
    private static partial void LogConnectionRefused(ILogger logger, string device, string reason);

    /// <summary>
    /// A publish's PUBACK: its reason code and reason string (and whether the batch was stored), or the connection closed
    /// instead of any PUBACK.
    /// </summary>
    private readonly record struct PublishAnswer(MqttPubAckReasonCode Code, string? Reason, bool Close = false, bool Stored = false)
    {
        public static readonly PublishAnswer CloseInstead = new(MqttPubAckReasonCode.UnspecifiedError, null, Close: true);
    }

    /// <summary>
    /// One MQTT 5 connection's PUBACKs made before their publishes were committed, each with the answer it waits for.
    /// Such a PUBACK carries a marker as its reason string until it leaves: a string of its own (found by reference, so
    /// no other PUBACK can take its answer) whose first character no reason of Telemetry's begins with.
    /// </summary>
    private sealed class PendingAcks(MqttIngestEndpoint endpoint)
    {
        private const char OwedMark = '\u0001';
        private readonly List<(string Marker, Task<PublishAnswer> Answer)> _owed = [];
        private TaskCompletionSource? _paid;
        private bool _ended;

        /// <summary>True for the reason string of a PUBACK made before its answer.</summary>
        public static bool IsOwed(string? reason) => reason is [OwedMark, ..];

        /// <summary>Owes <paramref name="answer"/> to a PUBACK about to be made; returns its marker.</summary>
        public string Owe(Task<PublishAnswer> answer)
        {
            var marker = new string(OwedMark, 2);
            lock (_owed)
            {
                if (!_ended)
                {
                    _owed.Add((marker, answer));
                    Interlocked.Increment(ref endpoint._owedAcks);
                }
            }

            return marker;
        }

        public Task<PublishAnswer>? Find(string marker)
        {
            lock (_owed)
            {
                var index = IndexOf(marker);
                return index < 0 ? null : _owed[index].Answer;
            }
        }

        private int IndexOf(string marker)
        {
            for (var i = 0; i < _owed.Count; i++)
            {
                if (ReferenceEquals(_owed[i].Marker, marker))
                {
                    return i;
                }
            }

            return -1;
        }

        /// <summary>The PUBACK of <paramref name="marker"/> has been answered (or held back): it is owed no longer.</summary>
        public void Paid(string marker)
        {
            TaskCompletionSource? paid;
            lock (_owed)
            {
                var index = IndexOf(marker);
                if (index < 0)
                {
                    return;
                }

                _owed.RemoveAt(index);
                Interlocked.Decrement(ref endpoint._owedAcks);
                paid = _paid;
                _paid = null;
            }

            paid?.TrySetResult();
        }

        /// <summary>
        /// Right after <see cref="Owe"/>: completes once fewer than <paramref name="limit"/> of the connection's publishes
        /// await their commits (this one included, so a limit of 1 waits for this one's), and fewer than
        /// <paramref name="limit"/> PUBACKs made before this one's have yet to leave; or once the connection has ended.
        /// (A device that does not read its socket at all is not read either once its output backs up: see
        /// <see cref="MqttPacketSizeGuard"/>.)
        /// </summary>
        public async Task WaitForRoomAsync(int limit)
        {
            while (Room(limit) is { } wait)
            {
                await wait;
            }
        }

        /// <summary>Completes once every PUBACK owed has left, or the connection has ended.</summary>
        public async Task WaitUntilPaidAsync()
        {
            while (Room(limit: 1, afterOwing: false) is { } wait)
            {
                await wait;
            }
        }

        /// <summary>What to wait for before there is room, or null when there is.</summary>
        private Task? Room(int limit, bool afterOwing = true)
        {
            lock (_owed)
            {
                if (_ended)
                {
                    return null;
                }

                Task<PublishAnswer>? oldestUndecided = null;
                var undecided = 0;
                foreach (var (_, answer) in _owed)
                {
                    if (!answer.IsCompleted)
                    {
                        oldestUndecided ??= answer;
                        undecided++;
                    }
                }

                if (undecided >= limit)
                {
                    return oldestUndecided;
                }

                if (_owed.Count - (afterOwing ? 1 : 0) >= limit)
                {
                    return (_paid ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
                }

                return null;
            }
        }

        /// <summary>When the connection ends, its PUBACKs are owed no longer, and the registry forgets it.</summary>
        public void ForgetWhenEnded(CancellationToken connection, ConcurrentDictionary<CancellationToken, PendingAcks> registry) =>
            connection.UnsafeRegister(static (state, token) =>
            {
                var (acks, registry) = ((PendingAcks, ConcurrentDictionary<CancellationToken, PendingAcks>))state!;
                registry.TryRemove(new KeyValuePair<CancellationToken, PendingAcks>(token, acks));
                acks.End();
            }, (this, registry));

        private void End()
        {
            TaskCompletionSource? paid;
            lock (_owed)
            {
                _ended = true;
                Interlocked.Add(ref endpoint._owedAcks, -_owed.Count);
                _owed.Clear();
                paid = _paid;
                _paid = null;
            }

            paid?.TrySetResult();
        }
    }
}
