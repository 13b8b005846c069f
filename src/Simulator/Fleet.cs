using System.Buffers;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using MQTTnet;
using MQTTnet.Protocol;
using Telemetry.Protos;

namespace Telemetry.Simulator;

/// <summary>Provisions the virtual wearables and runs each one's send loop over MQTT or gRPC.</summary>
public sealed class Fleet(SimulatorOptions options, FleetStatistics statistics)
{
    /// <summary>How long after the run a device keeps trying to deliver a batch it holds, so its ledger settles.</summary>
    private static readonly TimeSpan SettleTime = TimeSpan.FromSeconds(30);

    private const string ProbeRules = """
        {"rules":[{"id":"probe","type":"threshold","kind":"heart_rate","direction":"above","level":250,"clearLevel":200,"priority":"low"}]}
        """;

    public async Task<IReadOnlyList<VirtualWearable>> ProvisionAsync(CancellationToken cancellationToken)
    {
        using var http = new HttpClient { BaseAddress = new Uri(options.Url) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", options.ResolveAdminToken());
        var wearables = new List<VirtualWearable>();
        for (var i = 1; i <= options.Devices; i++)
        {
            var deviceId = $"{options.Prefix}-{i:D4}";
            var patientId = $"p-{i:D4}";
            using var response = await http.PostAsJsonAsync("/api/devices", new { deviceId, patientId }, cancellationToken);
            if (response.StatusCode != HttpStatusCode.Created)
            {
                throw new InvalidOperationException($"provisioning {deviceId} answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(cancellationToken)}");
            }

            using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync(cancellationToken));
            if (options.AlertProbeSeconds > 0)
            {
                using var rules = await http.PutAsync($"/api/patients/{patientId}/alert-rules", new StringContent(ProbeRules, System.Text.Encoding.UTF8, "application/json"), cancellationToken);
                if (!rules.IsSuccessStatusCode)
                {
                    throw new InvalidOperationException($"setting {patientId}'s probe rule answered {(int)rules.StatusCode}: {await rules.Content.ReadAsStringAsync(cancellationToken)}");
                }
            }

            wearables.Add(new VirtualWearable(deviceId, patientId, body.RootElement.GetProperty("token").GetString()!, seed: i));
        }

        return wearables;
    }

    public Task RunAsync(VirtualWearable wearable, DeviceLedger ledger, CancellationToken stop) =>
        options.Protocol == "grpc"
            ? options.GrpcClient == SimulatorOptions.LeanClient ? RunLeanGrpcAsync(wearable, stop) : RunGrpcAsync(wearable, ledger, stop)
            : options.MqttClient == SimulatorOptions.LeanClient ? RunLeanMqttAsync(wearable, stop)
            : RunMqttAsync(wearable, ledger, stop);

    private readonly LoadPacer _pacer = new();

    /// <summary>
    /// Publishes on a <see cref="MqttLoadConnection"/>, paced with the fleet's other devices from one thread: for
    /// throughput, without the ledger, reconnects or resends (a connection that drops ends the device's run).
    /// </summary>
    private async Task RunLeanMqttAsync(VirtualWearable wearable, CancellationToken stop)
    {
        using var connection = await MqttLoadConnection.ConnectAsync(options.MqttHost, options.MqttPort, wearable.DeviceId, wearable.DeviceId, wearable.Token, options.Window, stop);
        connection.Acked = (readings, started, answeredAt, reason) =>
        {
            if (reason < 0x80)
            {
                statistics.Acked(readings, started, answeredAt);
            }
            else
            {
                statistics.Refused();
                Console.Error.WriteLine($"{wearable.DeviceId}: a batch was refused: reason 0x{reason:x2}");
            }
        };

        AlertProbe? probe = null;
        if (options.AlertProbeSeconds > 0)
        {
            probe = new AlertProbe(options.AlertProbeSeconds, statistics);
            connection.MessageReceived = (_, payload) => probe.OnAlert(payload);
            await connection.SubscribeAsync($"patients/{wearable.PatientId}/alerts", stop);
        }

        await _pacer.Add(new LoadPacer.Device(wearable, new LoadPacer.MqttSender(connection, wearable.DeviceId), statistics, options.Rate, options.Batch, options.Window, probe, stop));
        await connection.DrainAsync(SettleTime);

        // Closed, and its receive loop ended, before what had no answer is counted: a late ack is then not also counted.
        connection.Dispose();
        await CountUnansweredAsync(wearable, connection.Completion, () => connection.InFlight);
    }

    /// <summary>
    /// Sends on a <see cref="GrpcLoadConnection"/>, paced with the fleet's other devices from one thread, as many batches
    /// in flight as the server's flow control lets through: for throughput, without the ledger, reconnects or resends (a
    /// call that ends early ends the device's run).
    /// </summary>
    private async Task RunLeanGrpcAsync(VirtualWearable wearable, CancellationToken stop)
    {
        var endpoint = new Uri(options.GrpcUrl);
        using var connection = await GrpcLoadConnection.ConnectAsync(endpoint.Host, endpoint.Port, wearable.Token, GrpcLoadConnection.MostInFlight, stop);
        connection.Acked = (readings, started, answeredAt, ack) =>
        {
            if (ack.Status is AckStatus.Committed or AckStatus.Duplicate)
            {
                statistics.Acked(readings, started, answeredAt);
            }
            else
            {
                statistics.Refused();
                Console.Error.WriteLine($"{wearable.DeviceId}: batch {ack.Seq} refused: {ack.Reason}");
            }
        };

        await _pacer.Add(new LoadPacer.Device(wearable, new LoadPacer.GrpcSender(connection), statistics, options.Rate, options.Batch, GrpcLoadConnection.MostInFlight, probe: null, stop));
        await connection.DrainAsync(SettleTime);
        connection.Dispose();
        await CountUnansweredAsync(wearable, connection.Completion, () => connection.InFlight);
    }

    /// <summary>Counts a lean connection's batches that had no answer, once it has ended; throws when it ended badly.</summary>
    private async Task CountUnansweredAsync(VirtualWearable wearable, Task completion, Func<int> inFlight)
    {
        var ended = await completion.ContinueWith(static task => task.Exception?.InnerException, TaskScheduler.Default);
        var inFlightAtClose = inFlight();
        if (inFlightAtClose > 0)
        {
            for (var i = 0; i < inFlightAtClose; i++)
            {
                statistics.NoAnswer();
            }

            Console.Error.WriteLine($"{wearable.DeviceId}: {inFlightAtClose} batches never answered");
        }

        if (ended is not null)
        {
            throw new InvalidOperationException($"{wearable.DeviceId}: {ended.Message}", ended);
        }
    }

    /// <summary>
    /// Publishes each batch at QoS 1 until the server answers it. A connection that drops (a server restart, a network
    /// fault) is made again and the batch without an answer is sent again, as a device must; the ledger counts each
    /// batch once, however many times it was sent.
    /// </summary>
    private async Task RunMqttAsync(VirtualWearable wearable, DeviceLedger ledger, CancellationToken stop)
    {
        using var client = new MqttClientFactory().CreateMqttClient();
        var connect = new MqttClientOptionsBuilder()
            .WithTcpServer(options.MqttHost, options.MqttPort)
            .WithClientId(wearable.DeviceId)
            .WithCredentials(wearable.DeviceId, wearable.Token)
            .WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V500)
            .WithTimeout(TimeSpan.FromSeconds(5))
            .Build();
        var connected = await client.ConnectAsync(connect, stop);
        if (connected.ResultCode != MqttClientConnectResultCode.Success)
        {
            throw new InvalidOperationException($"{wearable.DeviceId}: MQTT connect refused: {connected.ResultCode} {connected.ReasonString}");
        }

        var topic = $"devices/{wearable.DeviceId}/vitals";
        AlertProbe? probe = null;
        if (options.AlertProbeSeconds > 0)
        {
            probe = new AlertProbe(options.AlertProbeSeconds, statistics);
            client.ApplicationMessageReceivedAsync += args =>
            {
                probe.OnAlert(args.ApplicationMessage.Payload.ToArray());
                return Task.CompletedTask;
            };
            await client.SubscribeAsync($"patients/{wearable.PatientId}/alerts", MqttQualityOfServiceLevel.AtLeastOnce, stop);
        }

        var pending = new Queue<(VitalBatch Batch, MqttApplicationMessage Message, int Count, long Started, Task<(MqttClientPublishResult? Result, long At)> Answer)>();
        await foreach (var batch in BatchesAsync(wearable, reuse: false, stop))
        {
            var started = Stopwatch.GetTimestamp();
            probe?.Mark(batch, started);
            var count = Count(batch);
            statistics.Sent(count);
            var message = new MqttApplicationMessageBuilder()
                .WithTopic(topic)
                .WithPayload(batch.ToByteArray())
                .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
                .Build();
            // Up to the window's worth of publishes wait for their PUBACKs at once; the oldest is settled first.
            pending.Enqueue((batch, message, count, started, TryPublishAsync(client, message)));
            while (pending.Count >= options.Window)
            {
                await SettleAsync(pending.Dequeue());
            }
        }

        while (pending.Count > 0)
        {
            await SettleAsync(pending.Dequeue());
        }

        async Task SettleAsync((VitalBatch Batch, MqttApplicationMessage Message, int Count, long Started, Task<(MqttClientPublishResult? Result, long At)> Answer) item)
        {
            // No answer on the first try (the connection dropped): sent again until answered. The latency runs to the
            // answer's arrival, not to this settling, which waits for the window.
            var (result, answeredAt) = await item.Answer;
            if (result is null)
            {
                result = await PublishUntilAnsweredAsync(client, connect, item.Message, wearable.DeviceId, stop);
                answeredAt = Stopwatch.GetTimestamp();
            }

            if (result?.ReasonCode == MqttClientPublishReasonCode.Success)
            {
                statistics.Acked(item.Count, item.Started, answeredAt);
                ledger.Acked(item.Batch.Seq, Distinct(item.Batch), item.Batch.BaseTimeMs, LastMs(item.Batch), item.Batch.Series.Select(series => series.Kind));
            }
            else
            {
                statistics.Refused();
                Console.Error.WriteLine($"{wearable.DeviceId}: batch {item.Batch.Seq} {(result is null ? "never answered" : $"refused: {result.ReasonCode} {result.ReasonString}")}");
            }
        }

        if (client.IsConnected)
        {
            await client.DisconnectAsync();
        }
    }

    /// <summary>One try: the server's answer and when it came, or null when the connection is gone or dropped before it came.</summary>
    private async Task<(MqttClientPublishResult? Result, long At)> TryPublishAsync(IMqttClient client, MqttApplicationMessage message)
    {
        try
        {
            return client.IsConnected ? (await client.PublishAsync(message, CancellationToken.None), Stopwatch.GetTimestamp()) : (null, 0);
        }
        catch (Exception exception) when (exception is MQTTnet.Exceptions.MqttCommunicationException or OperationCanceledException or TimeoutException or InvalidOperationException)
        {
            statistics.NoAnswer();
            return (null, 0);
        }
    }

    /// <summary>The server's answer to <paramref name="message"/>, connecting again as often as it takes; null when none came before the settle time after the run.</summary>
    private async Task<MqttClientPublishResult?> PublishUntilAnsweredAsync(IMqttClient client, MqttClientOptions connect, MqttApplicationMessage message, string deviceId, CancellationToken stop)
    {
        var giveUpAt = (DateTime?)null;
        while (true)
        {
            try
            {
                if (!client.IsConnected)
                {
                    var connected = await client.ConnectAsync(connect, CancellationToken.None);
                    if (connected.ResultCode != MqttClientConnectResultCode.Success)
                    {
                        throw new MQTTnet.Exceptions.MqttCommunicationException($"connect refused: {connected.ResultCode}");
                    }

                    statistics.Reconnected();
                }

                return await client.PublishAsync(message, CancellationToken.None);
            }
            catch (Exception exception) when (exception is MQTTnet.Exceptions.MqttCommunicationException or OperationCanceledException or TimeoutException or InvalidOperationException)
            {
                // No answer: the batch is sent again on a new connection.
                statistics.NoAnswer();
                giveUpAt ??= stop.IsCancellationRequested ? DateTime.UtcNow + SettleTime : null;
                if (giveUpAt is { } deadline && DateTime.UtcNow > deadline)
                {
                    Console.Error.WriteLine($"{deviceId}: gave up on a batch after the run: {exception.Message}");
                    return null;
                }

                await Task.Delay(500, CancellationToken.None);
            }
        }
    }

    private async Task RunGrpcAsync(VirtualWearable wearable, DeviceLedger ledger, CancellationToken stop)
    {
        using var channel = GrpcChannel.ForAddress(options.GrpcUrl);
        var client = new Ingest.IngestClient(channel);
        using var call = client.Stream(new Metadata { { "authorization", $"Bearer {wearable.Token}" } }, cancellationToken: CancellationToken.None);
        var inFlight = new System.Collections.Concurrent.ConcurrentDictionary<ulong, (int Count, long Started, long FirstMs, long LastMs, string[] Kinds, int Distinct)>();
        var acks = Task.Run(async () =>
        {
            await foreach (var ack in call.ResponseStream.ReadAllAsync())
            {
                if (inFlight.TryRemove(ack.Seq, out var sent))
                {
                    if (ack.Status is AckStatus.Committed or AckStatus.Duplicate)
                    {
                        statistics.Acked(sent.Count, sent.Started);
                        ledger.Acked(ack.Seq, sent.Distinct, sent.FirstMs, sent.LastMs, sent.Kinds);
                    }
                    else
                    {
                        statistics.Refused();
                        Console.Error.WriteLine($"{wearable.DeviceId}: batch {ack.Seq} refused: {ack.Reason}");
                    }
                }
            }
        }, CancellationToken.None);

        // WriteAsync's task completes only once the batch is serialized and written, so the wearable's one reusable batch
        // serves every message.
        await foreach (var batch in BatchesAsync(wearable, reuse: true, stop))
        {
            var count = Count(batch);
            inFlight[batch.Seq] = (count, Stopwatch.GetTimestamp(), batch.BaseTimeMs, LastMs(batch), KindsOf(batch), Distinct(batch));
            statistics.Sent(count);
            await call.RequestStream.WriteAsync(batch, CancellationToken.None);
        }

        await call.RequestStream.CompleteAsync();
        await acks;
    }

    /// <summary>
    /// The wearable's batches, paced so the device sends <c>rate</c> readings a second in batches of <c>batch</c>; with
    /// <paramref name="reuse"/>, each in the same object, valid until the next is asked for.
    /// </summary>
    private async IAsyncEnumerable<VitalBatch> BatchesAsync(VirtualWearable wearable, bool reuse, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken stop)
    {
        var intervalMs = 1_000 / options.Rate;
        var period = TimeSpan.FromMilliseconds(intervalMs * options.Batch);

        // The first batch at a random point of the first period, as independent devices' are: a fleet started together
        // would otherwise send in step, all its batches in the same millisecond of every period.
        try
        {
            await Task.Delay(period * Random.Shared.NextDouble(), stop);
        }
        catch (OperationCanceledException)
        {
            yield break;
        }

        // A batch holds readings already taken: the period that just ended.
        var next = DateTimeOffset.UtcNow - period;
        using var timer = new PeriodicTimer(period);
        while (!stop.IsCancellationRequested)
        {
            var startMs = next.ToUnixTimeMilliseconds();
            yield return reuse ? wearable.NextBatchReused(startMs, intervalMs, options.Batch) : wearable.NextBatch(startMs, intervalMs, options.Batch);
            next += period;
            try
            {
                await timer.WaitForNextTickAsync(stop);
            }
            catch (OperationCanceledException)
            {
                yield break;
            }
        }
    }

    /// <summary>The batch's vitals, copied out of it (a reused batch changes).</summary>
    private static string[] KindsOf(VitalBatch batch)
    {
        var kinds = new string[batch.Series.Count];
        for (var i = 0; i < kinds.Length; i++)
        {
            kinds[i] = batch.Series[i].Kind;
        }

        return kinds;
    }

    private static int Count(VitalBatch batch)
    {
        var count = 0;
        foreach (var series in batch.Series)
        {
            count += series.Values.Count;
        }

        return count;
    }

    /// <summary>
    /// The readings the server keeps of the batch: one per vital and millisecond. Faster than 1,000 readings a second
    /// of one vital, readings share a millisecond, and the server stores such a reading once (the same device, vital
    /// and time is a duplicate).
    /// </summary>
    private static int Distinct(VitalBatch batch)
    {
        var distinct = 0;
        foreach (var series in batch.Series)
        {
            var deltas = series.TimeDeltasMs;
            for (var i = 0; i < deltas.Count; i++)
            {
                if (i == 0 || deltas[i] > 0)
                {
                    distinct++;
                }
            }
        }

        return distinct;
    }

    /// <summary>The time of the batch's last reading.</summary>
    private static long LastMs(VitalBatch batch)
    {
        var lastMs = long.MinValue;
        foreach (var series in batch.Series)
        {
            var timeMs = batch.BaseTimeMs;
            for (var i = 0; i < series.TimeDeltasMs.Count; i++)
            {
                timeMs += series.TimeDeltasMs[i];
            }

            lastMs = Math.Max(lastMs, timeMs);
        }

        return lastMs;
    }
}
