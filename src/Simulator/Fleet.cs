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
            wearables.Add(new VirtualWearable(deviceId, patientId, body.RootElement.GetProperty("token").GetString()!, seed: i));
        }

        return wearables;
    }

    public Task RunAsync(VirtualWearable wearable, CancellationToken stop) =>
        options.Protocol == "grpc" ? RunGrpcAsync(wearable, stop) : RunMqttAsync(wearable, stop);

    private async Task RunMqttAsync(VirtualWearable wearable, CancellationToken stop)
    {
        using var client = new MqttClientFactory().CreateMqttClient();
        var connect = new MqttClientOptionsBuilder()
            .WithTcpServer(options.MqttHost, options.MqttPort)
            .WithClientId(wearable.DeviceId)
            .WithCredentials(wearable.DeviceId, wearable.Token)
            .WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V500)
            .Build();
        var connected = await client.ConnectAsync(connect, stop);
        if (connected.ResultCode != MqttClientConnectResultCode.Success)
        {
            throw new InvalidOperationException($"{wearable.DeviceId}: MQTT connect refused: {connected.ResultCode} {connected.ReasonString}");
        }

        var topic = $"devices/{wearable.DeviceId}/vitals";
        await foreach (var batch in BatchesAsync(wearable, stop))
        {
            var started = Stopwatch.GetTimestamp();
            var count = Count(batch);
            statistics.Sent(count);
            var result = await client.PublishAsync(new MqttApplicationMessageBuilder()
                .WithTopic(topic)
                .WithPayload(batch.ToByteArray())
                .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
                .Build(), CancellationToken.None);
            if (result.ReasonCode == MqttClientPublishReasonCode.Success)
            {
                statistics.Acked(count, started);
            }
            else
            {
                statistics.Refused();
                Console.Error.WriteLine($"{wearable.DeviceId}: batch {batch.Seq} refused: {result.ReasonCode} {result.ReasonString}");
            }
        }

        await client.DisconnectAsync();
    }

    private async Task RunGrpcAsync(VirtualWearable wearable, CancellationToken stop)
    {
        using var channel = GrpcChannel.ForAddress(options.GrpcUrl);
        var client = new Ingest.IngestClient(channel);
        using var call = client.Stream(new Metadata { { "authorization", $"Bearer {wearable.Token}" } }, cancellationToken: CancellationToken.None);
        var inFlight = new System.Collections.Concurrent.ConcurrentDictionary<ulong, (int Count, long Started)>();
        var acks = Task.Run(async () =>
        {
            await foreach (var ack in call.ResponseStream.ReadAllAsync())
            {
                if (inFlight.TryRemove(ack.Seq, out var sent))
                {
                    if (ack.Status is AckStatus.Committed or AckStatus.Duplicate)
                    {
                        statistics.Acked(sent.Count, sent.Started);
                    }
                    else
                    {
                        statistics.Refused();
                        Console.Error.WriteLine($"{wearable.DeviceId}: batch {ack.Seq} refused: {ack.Reason}");
                    }
                }
            }
        }, CancellationToken.None);

        await foreach (var batch in BatchesAsync(wearable, stop))
        {
            var count = Count(batch);
            inFlight[batch.Seq] = (count, Stopwatch.GetTimestamp());
            statistics.Sent(count);
            await call.RequestStream.WriteAsync(batch, CancellationToken.None);
        }

        await call.RequestStream.CompleteAsync();
        await acks;
    }

    /// <summary>The wearable's batches, paced so the device sends <c>rate</c> readings a second in batches of <c>batch</c>.</summary>
    private async IAsyncEnumerable<VitalBatch> BatchesAsync(VirtualWearable wearable, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken stop)
    {
        var intervalMs = 1_000 / options.Rate;
        var period = TimeSpan.FromMilliseconds(intervalMs * options.Batch);
        // A batch holds readings already taken: the period that just ended.
        var next = DateTimeOffset.UtcNow - period;
        using var timer = new PeriodicTimer(period);
        while (!stop.IsCancellationRequested)
        {
            yield return wearable.NextBatch(next.ToUnixTimeMilliseconds(), intervalMs, options.Batch);
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

    private static int Count(VitalBatch batch) => batch.Series.Sum(series => series.Values.Count);
}
