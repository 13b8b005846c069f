using System.Buffers;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using MQTTnet.Server;
using Telemetry.Core;
using Telemetry.Core.Devices;
using Telemetry.Core.Readings;
using Telemetry.Ingest.Codecs;
using Telemetry.Ingest.Pipeline;

namespace Telemetry.Ingest.Mqtt;

/// <summary>
/// The MQTT front door, on the broker hosted in Kestrel. A device connects with its id as client id and username and
/// its token as password, or with a client certificate that names it; it may publish only to
/// <c>devices/{deviceId}/vitals</c> and subscribe only to its patient's alerts. A QoS 1 PUBACK leaves only after the
/// batch is committed; a reading is never relayed to other clients.
/// </summary>
public sealed partial class MqttIngestEndpoint(
    DeviceAuthenticator authenticator,
    DeviceCertificates certificates,
    MqttPayloadIngest payloads,
    IngestInstruments instruments,
    DeviceRejectLog rejectLog,
    DeviceRateLimiter rateLimiter,
    IOptions<IngestOptions> options,
    ILogger<MqttIngestEndpoint> logger)
{
    public const string Protocol = "mqtt";

    private const string IdentityItem = "telemetry.device";
    private const string ProtocolVersionItem = "telemetry.protocol-version";

    private MqttServer? _server;
    private int _inFlight;
    private volatile bool _draining;

    /// <summary>True once the broker has started and the handlers are in place.</summary>
    public bool IsListening { get; private set; }

    public void Attach(MqttServer server)
    {
        _server = server;
        server.ValidatingConnectionAsync += ValidateConnectionAsync;
        server.InterceptingPublishAsync += InterceptPublishAsync;
        server.InterceptingSubscriptionAsync += InterceptSubscriptionAsync;
        server.ClientConnectedAsync += args =>
        {
            // Set here, after the session is chosen: a session taken over from an older connection keeps its items.
            args.SessionItems[ProtocolVersionItem] = args.ProtocolVersion;
            instruments.DeviceConnected(Protocol);
            if (args.SessionItems[IdentityItem] is DeviceIdentity device)
            {
                // The client is registered now, so a rotation or revocation from here on ends it; one that raced the
                // sign-in is caught by this check.
                _ = EndIfOutdatedAsync(device);
            }

            return Task.CompletedTask;
        };
        server.ClientDisconnectedAsync += args =>
        {
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

    private async Task EndIfOutdatedAsync(DeviceIdentity device)
    {
        try
        {
            if (!await authenticator.IsCurrentAsync(device))
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
        var identity = args.ClientCertificate is { } certificate && certificates.Enabled
            ? await AuthenticateCertificateAsync(args, certificate)
            : await AuthenticateTokenAsync(args);
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
        LogDeviceConnected(logger, identity.DeviceId, args.ProtocolVersion);
    }

    private async Task<DeviceIdentity?> AuthenticateTokenAsync(ValidatingConnectionEventArgs args)
    {
        if (string.IsNullOrEmpty(args.UserName) || string.IsNullOrEmpty(args.Password))
        {
            Refuse(args, MqttConnectReasonCode.BadUserNameOrPassword, "username (device id) and password (device token) are required");
            return null;
        }

        var identity = await authenticator.AuthenticateAsync(args.Password, args.UserName);
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
            : await authenticator.AuthenticateAsync(args.Password, deviceId);
        if (identity is null)
        {
            Refuse(args, MqttConnectReasonCode.NotAuthorized, "the certificate's device is unknown or revoked, or the token is wrong", deviceId);
        }

        return identity;
    }

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

        // Counted before the drain flag is read, so a drain waits for every publish that got past it.
        Interlocked.Increment(ref _inFlight);
        try
        {
            if (_draining)
            {
                // Every device hears the same during a drain: DISCONNECT 0x8B, and no PUBACK for this publish, which it
                // sends again after reconnecting. (The DISCONNECT is sent at once; the broker's own close after the
                // interceptor sends no second one.)
                instruments.PayloadRejected(Protocol, "shutting_down");
                await DisconnectAsync(args.ClientId, MqttDisconnectReasonCode.ServerShuttingDown, ShuttingDown);
                args.CloseConnection = true;
                return;
            }

            await HandlePublishAsync(args);
        }
        catch (Exception exception)
        {
            // Nothing unexpected may leave the handler (MQTTnet would drop the connection without a word), and
            // nothing here was committed: refuse in a way the device cannot mistake for an ack.
            LogPublishFailed(logger, exception);
            RefuseUncommitted(args, MqttPubAckReasonCode.UnspecifiedError, "the server could not take this message; publish again", "error");
        }
        finally
        {
            Interlocked.Decrement(ref _inFlight);
        }
    }

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
        while (Volatile.Read(ref _inFlight) > 0 && clock.GetElapsedTime(started) < timeout)
        {
            await Task.Delay(10, cancellationToken);
        }

        var clients = await server.GetClientsAsync();
        foreach (var client in clients)
        {
            await TryDisconnectAsync(client, MqttDisconnectReasonCode.ServerShuttingDown, ShuttingDown);
        }

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

    private async Task HandlePublishAsync(InterceptingPublishEventArgs args)
    {
        if (args.SessionItems?[IdentityItem] is not DeviceIdentity device)
        {
            Answer(args, MqttPubAckReasonCode.NotAuthorized, "not authenticated", "unauthenticated");
            return;
        }

        if (!MqttTopics.IsDeviceVitals(args.ApplicationMessage.Topic, device.DeviceId))
        {
            // A 3.1.1 device would read a refusing PUBACK as success and drop its data: it is disconnected instead.
            RefuseUncommitted(args, MqttPubAckReasonCode.NotAuthorized, $"a device publishes only to {MqttTopics.DeviceVitals(device.DeviceId)}", "topic");
            return;
        }

        if (!rateLimiter.TryTakeMessage(device.DeviceId))
        {
            RefuseUncommitted(args, MqttPubAckReasonCode.QuotaExceeded,
                $"more than {options.Value.MaxMessagesPerSecondPerDevice} messages a second; batch readings or slow down", "rate_limited");
            return;
        }

        var answer = await payloads.IngestAsync(device, args.ApplicationMessage.Payload, args.CancellationToken);
        switch (answer.Verdict)
        {
            case MqttPayloadVerdict.Stored:
                args.Response.ReasonCode = MqttPubAckReasonCode.Success;
                args.Response.ReasonString = answer.Reason;
                instruments.AckSent(Protocol);
                break;
            case MqttPayloadVerdict.StoreUnavailable:
                // Not stored: the device must send it again, which a 3.1.1 device does only after a reconnect.
                RefuseUncommitted(args, answer.Code, answer.Reason!, metricReason: null);
                break;
            default:
                args.Response.ReasonCode = answer.Code;
                args.Response.ReasonString = answer.Reason;
                break;
        }
    }

    private void Answer(InterceptingPublishEventArgs args, MqttPubAckReasonCode code, string reason, string metricReason)
    {
        args.Response.ReasonCode = code;
        args.Response.ReasonString = reason;
        instruments.PayloadRejected(Protocol, metricReason);
        if (args.SessionItems?[IdentityItem] is DeviceIdentity device && metricReason != "all_rejected")
        {
            rejectLog.Record(device.DeviceId, Protocol, reason);
        }
    }

    /// <summary>
    /// Refuses a message that was not stored and that the device should send again (or fix). An MQTT 3.1.1 PUBACK cannot
    /// carry an error and would read as success, so a 3.1.1 device is disconnected instead and resends on reconnect.
    /// </summary>
    private void RefuseUncommitted(InterceptingPublishEventArgs args, MqttPubAckReasonCode code, string reason, string? metricReason)
    {
        if (metricReason is not null)
        {
            instruments.PayloadRejected(Protocol, metricReason);
        }

        if (args.SessionItems?[ProtocolVersionItem] is MqttProtocolVersion.V500)
        {
            args.Response.ReasonCode = code;
            args.Response.ReasonString = reason;
            if (metricReason is not null && args.SessionItems?[IdentityItem] is DeviceIdentity device)
            {
                rejectLog.Record(device.DeviceId, Protocol, reason);
            }
        }
        else
        {
            args.CloseConnection = true;
        }
    }

    private Task InterceptSubscriptionAsync(InterceptingSubscriptionEventArgs args)
    {
        if (args.SessionItems?[IdentityItem] is not DeviceIdentity device
            || args.TopicFilter.Topic != MqttTopics.PatientAlerts(device.PatientId))
        {
            args.ProcessSubscription = false;
            args.Response.ReasonCode = MqttSubscribeReasonCode.NotAuthorized;
            args.Response.ReasonString = "a device may subscribe only to its own patient's alerts";
        }

        return Task.CompletedTask;
    }

    [LoggerMessage(EventId = 1101, Level = LogLevel.Debug, Message = "Device {DeviceId} connected over MQTT {ProtocolVersion}")]
    private static partial void LogDeviceConnected(ILogger logger, string deviceId, MqttProtocolVersion protocolVersion);

    [LoggerMessage(EventId = 1104, Level = LogLevel.Warning, Message = "Checking that device {DeviceId}'s credentials are still current failed")]
    private static partial void LogCredentialCheckFailed(ILogger logger, Exception exception, string deviceId);

    [LoggerMessage(EventId = 1103, Level = LogLevel.Error, Message = "An MQTT publish could not be handled; it was refused, not acknowledged")]
    private static partial void LogPublishFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 1102, Level = LogLevel.Information, Message = "MQTT connection of {Device} refused: {Reason}")]
    private static partial void LogConnectionRefused(ILogger logger, string device, string reason);
}
