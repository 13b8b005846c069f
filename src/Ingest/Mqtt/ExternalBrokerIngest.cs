using System.Buffers;
using System.Threading.Channels;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using MQTTnet;
using MQTTnet.Protocol;

namespace Telemetry.Ingest.Mqtt;

/// <summary>
/// Reads devices' readings from an external broker (see <see cref="ExternalBrokerOptions"/>): one MQTT 5 client in a
/// persistent session, subscribed to <c>$share/{group}/devices/+/vitals</c> at QoS 1. Each message is committed and only
/// then acknowledged to the broker, in the order received; the broker sends at most <see cref="ExternalBrokerOptions.InFlight"/>
/// unacknowledged messages, which bounds what waits here. A message whose commit fails is retried until it is stored
/// or the server stops; what is not acknowledged stays in the session and comes again.
/// </summary>
/// <remarks>
/// The broker has already answered the device, so a refused message (malformed, from an unknown device, with no valid
/// readings) cannot be answered with a reason code: it is acknowledged so that it does not come back, counted, and kept
/// in the device's reject log (<c>GET /api/devices/{id}/rejects</c>).
/// </remarks>
public sealed partial class ExternalBrokerIngest(
    IOptions<ExternalBrokerOptions> options,
    IOptions<IngestOptions> ingest,
    DeviceAuthenticator devices,
    MqttPayloadIngest payloads,
    MqttAlertRelay alerts,
    IngestInstruments instruments,
    TimeProvider timeProvider,
    ILogger<ExternalBrokerIngest> logger) : BackgroundService
{
    private static readonly TimeSpan MaxRetryDelay = TimeSpan.FromSeconds(5);

    /// <summary>Room in an MQTT packet beyond its payload: fixed header, a device's topic and a few properties.</summary>
    private const int PacketOverheadBytes = 4_096;

    private readonly Channel<Pending> _inOrder = Channel.CreateUnbounded<Pending>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
    private readonly CancellationTokenSource _draining = new();
    private readonly SemaphoreSlim _slots = new(options.Value.InFlight, options.Value.InFlight);
    private IMqttClient? _client;
    private int _pending;

    // Which connection a message came on: an acknowledgement belongs to its own connection only (after a reconnect
    // the broker sends what was not acknowledged again, under a session that may have reused the packet id).
    private int _generation;

    // The latest connection whose session the broker did not have (it expired, or the broker restarted without it), or
    // that is still connecting: what the connections before it took and did not acknowledge, the broker will not send
    // again. A message taken on an earlier connection is left to the broker's resend only when none since lost it.
    private int _sessionLostAt;

    /// <summary>True while the server is connected and subscribed to the broker.</summary>
    public bool IsConnected { get; private set; }

    public bool Enabled => options.Value.Enabled;

    /// <summary>
    /// For shutdown: takes no new messages, waits up to <paramref name="timeout"/> for the ones being committed to be
    /// acknowledged, then leaves the broker; the session keeps whatever was not acknowledged. Returns how many messages
    /// were still unacknowledged then.
    /// </summary>
    public async Task<int> DrainAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        if (_client is not { } client)
        {
            return 0;
        }

        await _draining.CancelAsync();
        var deadline = timeProvider.GetUtcNow() + timeout;
        while (Volatile.Read(ref _pending) > 0 && timeProvider.GetUtcNow() < deadline && !cancellationToken.IsCancellationRequested)
        {
            await Task.Delay(20, CancellationToken.None);
        }

        IsConnected = false;
        try
        {
            await client.DisconnectAsync(new MqttClientDisconnectOptionsBuilder().WithReason(MqttClientDisconnectOptionsReason.NormalDisconnection).Build(), CancellationToken.None);
        }
        catch (Exception exception)
        {
            LogDisconnectFailed(logger, exception);
        }

        return Volatile.Read(ref _pending);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!options.Value.Enabled)
        {
            return;
        }

        using var client = new MqttClientFactory().CreateMqttClient();
        _client = client;
        client.ApplicationMessageReceivedAsync += Receive;
        client.DisconnectedAsync += args =>
        {
            IsConnected = false;
            return Task.CompletedTask;
        };
        alerts.AttachExternal(message => client.IsConnected
            ? client.PublishAsync(message, CancellationToken.None)
            : throw new InvalidOperationException("not connected to the external MQTT broker"));
        var acks = AcknowledgeInOrderAsync();

        var delay = TimeSpan.FromSeconds(1);
        using var stopping = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken, _draining.Token);
        while (!stopping.IsCancellationRequested)
        {
            if (!client.IsConnected)
            {
                try
                {
                    await ConnectAsync(client, stopping.Token);
                    delay = TimeSpan.FromSeconds(1);
                }
                catch (Exception exception) when (!stopping.IsCancellationRequested)
                {
                    LogConnectFailed(logger, exception, options.Value.Host!, options.Value.BrokerPort, delay.TotalSeconds);
                    await Task.Delay(delay, timeProvider, stopping.Token).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                    delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.FromSeconds(30).Ticks));
                    continue;
                }
            }

            await Task.Delay(TimeSpan.FromMilliseconds(250), timeProvider, stopping.Token).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }

        _inOrder.Writer.TryComplete();
        await acks;
    }

    private async Task ConnectAsync(IMqttClient client, CancellationToken cancellationToken)
    {
        var broker = options.Value;
        var builder = new MqttClientOptionsBuilder()
            .WithTcpServer(broker.Host, broker.BrokerPort)
            .WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V500)
            .WithClientId(broker.ClientId)
            .WithCleanStart(false)
            .WithSessionExpiryInterval((uint)Math.Min(broker.SessionExpiry.TotalSeconds, uint.MaxValue))
            .WithReceiveMaximum((ushort)broker.InFlight)
            .WithMaximumPacketSize((uint)(ingest.Value.MaxMessageBytes + PacketOverheadBytes))
            .WithKeepAlivePeriod(TimeSpan.FromSeconds(15))
            .WithTimeout(TimeSpan.FromSeconds(10));
        if (broker.Username is not null)
        {
            builder.WithCredentials(broker.Username, broker.Password);
        }

        if (broker.UseTls)
        {
            builder.WithTlsOptions(tls => tls.UseTls());
        }

        // Taken as lost until the broker says it kept the session.
        var generation = Interlocked.Increment(ref _generation);
        var lostBefore = Volatile.Read(ref _sessionLostAt);
        Volatile.Write(ref _sessionLostAt, generation);
        var connected = await client.ConnectAsync(builder.Build(), cancellationToken);
        if (connected.ResultCode != MqttClientConnectResultCode.Success)
        {
            throw new InvalidOperationException($"the broker refused the connection: {connected.ResultCode} {connected.ReasonString}");
        }

        if (connected.IsSessionPresent)
        {
            Interlocked.CompareExchange(ref _sessionLostAt, lostBefore, generation);
        }

        var topic = $"$share/{broker.SharedGroup}/{MqttTopics.AllDeviceVitals}";
        try
        {
            var subscribed = await client.SubscribeAsync(
                new MqttClientSubscribeOptionsBuilder().WithTopicFilter(filter => filter.WithTopic(topic).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)).Build(),
                cancellationToken);
            if (subscribed.Items.FirstOrDefault()?.ResultCode is not MqttClientSubscribeResultCode.GrantedQoS1)
            {
                throw new InvalidOperationException($"the broker did not grant {topic} at QoS 1: {subscribed.Items.FirstOrDefault()?.ResultCode}");
            }
        }
        catch
        {
            // Connected but not subscribed would read nothing: leave, and the loop connects again.
            await client.DisconnectAsync(new MqttClientDisconnectOptionsBuilder().Build(), CancellationToken.None).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            throw;
        }

        IsConnected = true;
        LogConnected(logger, broker.Host!, broker.BrokerPort, topic, broker.ClientId!, connected.IsSessionPresent);
    }

    private async Task Receive(MqttApplicationMessageReceivedEventArgs args)
    {
        // Acknowledged by this server once committed, never by the client library on its own.
        args.AutoAcknowledge = false;
        if (_draining.IsCancellationRequested)
        {
            // Left unacknowledged: the session keeps it for the next start.
            return;
        }

        // At most InFlight messages are being processed; past that the client stops reading from the broker (the
        // receive maximum already holds back QoS 1; this holds back QoS 0 too).
        await _slots.WaitAsync(CancellationToken.None);

        // The payload is copied: processing goes on after this handler returns.
        var message = args.ApplicationMessage;
        var generation = Volatile.Read(ref _generation);
        Interlocked.Increment(ref _pending);
        var work = ProcessAsync(message.Topic, message.Payload.ToArray(), message.QualityOfServiceLevel == MqttQualityOfServiceLevel.AtMostOnce ? null : generation);
        if (!_inOrder.Writer.TryWrite(new Pending(args, work, generation)))
        {
            Interlocked.Decrement(ref _pending);
            _slots.Release();
        }
    }

    /// <summary>
    /// True when the message is done with (stored, or refused for good) and may be acknowledged. A QoS 1 message
    /// (<paramref name="generation"/> given) that cannot be stored yet is tried again while its connection lasts; a QoS
    /// 0 message is tried once, as QoS 0 promises no more.
    /// </summary>
    private async Task<bool> ProcessAsync(string topic, byte[] payload, int? generation)
    {
        if (!MqttTopics.TryParseDeviceVitals(topic, out var deviceId))
        {
            instruments.PayloadRejected(MqttIngestEndpoint.Protocol, "topic");
            LogRefused(logger, topic, "not a device's readings topic");
            return true;
        }

        // Read as of when it came, however often it is tried: times relative to arrival (SenML's) stay where they were
        // first put, so readings a failed commit stored after all are known as repeats when it is tried again.
        var readAtMs = timeProvider.GetUtcNow().ToUnixTimeMilliseconds();
        var delay = TimeSpan.FromMilliseconds(200);
        while (true)
        {
            try
            {
                if (await devices.IdentifyAsync(deviceId) is not { } device)
                {
                    instruments.PayloadRejected(MqttIngestEndpoint.Protocol, "unknown_device");
                    LogRefused(logger, topic, "no such device is provisioned, or it was revoked");
                    return true;
                }

                var answer = await payloads.IngestAsync(device, new ReadOnlySequence<byte>(payload), readAtMs, CancellationToken.None);
                if (answer.Verdict == MqttPayloadVerdict.Stored)
                {
                    instruments.AckSent(MqttIngestEndpoint.Protocol);
                    return true;
                }

                if (answer.Verdict == MqttPayloadVerdict.Refused)
                {
                    return true;
                }
            }
            catch (Exception exception)
            {
                LogProcessFailed(logger, exception, deviceId);
            }

            // Not stored: try again until it is, or until the server stops, or the connection it came on is gone and
            // the next one resumed its session (the broker then sends it again). A session the broker lost (expired,
            // or the broker restarted without it) sends nothing again: what this server holds of it is tried on.
            if (generation is not { } of || (of != Volatile.Read(ref _generation) && Volatile.Read(ref _sessionLostAt) <= of) || _draining.IsCancellationRequested)
            {
                return false;
            }

            await Task.Delay(delay, timeProvider, CancellationToken.None);
            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, MaxRetryDelay.Ticks));
        }
    }

    private async Task AcknowledgeInOrderAsync()
    {
        await foreach (var pending in _inOrder.Reader.ReadAllAsync(CancellationToken.None))
        {
            try
            {
                if (await pending.Done && pending.Generation == Volatile.Read(ref _generation))
                {
                    await pending.Message.AcknowledgeAsync(CancellationToken.None);
                }
            }
            catch (Exception exception)
            {
                // The connection is gone: the broker sends the message again in the resumed session, and the device's
                // batch number keeps it from being stored twice.
                LogAckFailed(logger, exception);
            }
            finally
            {
                Interlocked.Decrement(ref _pending);
                _slots.Release();
            }
        }
    }

    private sealed record Pending(MqttApplicationMessageReceivedEventArgs Message, Task<bool> Done, int Generation);

    [LoggerMessage(EventId = 1600, Level = LogLevel.Information, Message = "Reading devices from the broker at {Host}:{Port}, {Topic}, as {ClientId} (session resumed: {SessionPresent})")]
    private static partial void LogConnected(ILogger logger, string host, int port, string topic, string clientId, bool sessionPresent);

    [LoggerMessage(EventId = 1601, Level = LogLevel.Warning, Message = "Could not connect to the broker at {Host}:{Port}; trying again in {DelaySeconds} s")]
    private static partial void LogConnectFailed(ILogger logger, Exception exception, string host, int port, double delaySeconds);

    [LoggerMessage(EventId = 1602, Level = LogLevel.Warning, Message = "A message on {Topic} was dropped: {Reason}")]
    private static partial void LogRefused(ILogger logger, string topic, string reason);

    [LoggerMessage(EventId = 1603, Level = LogLevel.Warning, Message = "A message from device {DeviceId} could not be stored yet; retrying")]
    private static partial void LogProcessFailed(ILogger logger, Exception exception, string deviceId);

    [LoggerMessage(EventId = 1604, Level = LogLevel.Debug, Message = "An acknowledgement could not be sent to the broker; the message comes again")]
    private static partial void LogAckFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 1605, Level = LogLevel.Warning, Message = "Leaving the broker failed")]
    private static partial void LogDisconnectFailed(ILogger logger, Exception exception);
}
