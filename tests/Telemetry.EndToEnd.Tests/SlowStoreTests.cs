using System.Globalization;
using System.Net;
using System.Text.RegularExpressions;
using Grpc.Core;
using Grpc.Net.Client;
using Telemetry.Protos;
using Telemetry.Testing;
using Xunit.Abstractions;

namespace Telemetry.EndToEnd.Tests;

/// <summary>
/// The raw store made slow (VictoriaMetrics behind a proxy that holds back every chunk between server and store) under
/// devices that resend until acked and gRPC streams that write as fast as they can. Acks slow to the store's pace, the
/// streams are held back rather than buffered in the server, health turns unready with the reason, and when the store
/// is fast again everything resumes by itself, every reading stored once.
/// </summary>
public sealed partial class SlowStoreTests(ITestOutputHelper output)
{
    private const int InFlightPerStream = 16;
    private const int FloodReadings = 200;

    [Fact]
    public async Task A_slow_store_holds_devices_back_with_memory_bounded_and_loses_nothing()
    {
        await using var series = await VictoriaMetrics.StartNewAsync();
        await using var proxy = new FaultyProxy(series.Port);
        await using var server = await StartOnAsync(proxy, new Dictionary<string, string>
        {
            ["Telemetry__Ingest__SlowCommitWait"] = "00:00:02",
            ["Telemetry__Ingest__MaxInFlightBatchesPerStream"] = $"{InFlightPerStream}",
        });

        var start = Devices.RecentMinute(60);
        var devices = new List<ResendingDevice>();
        for (var i = 0; i < 3; i++)
        {
            var deviceId = $"slow-watch-{i}";
            devices.Add(new ResendingDevice(deviceId, $"p-slow-{i}", await server.ProvisionAsync(deviceId, $"p-slow-{i}"), start, 150, 5));
        }

        using var loadDone = new CancellationTokenSource(TimeSpan.FromMinutes(4));
        var load = devices.Select(device => device.SendAllAsync(() => Devices.ConnectMqttAsync(server, device.DeviceId, device.Token), loadDone.Token)).ToList();
        while (devices.Any(device => device.Acked < 20))
        {
            await Task.Delay(10);
        }

        var before = server.ResidentBytes();
        proxy.Delay = TimeSpan.FromSeconds(1);
        var floodStart = DateTimeOffset.UtcNow.AddHours(-3);
        var floods = new List<Flood>();
        for (var i = 0; i < 2; i++)
        {
            var deviceId = $"slow-flood-{i}";
            floods.Add(new Flood(deviceId, $"p-slow-flood-{i}", await server.ProvisionAsync(deviceId, $"p-slow-flood-{i}"), floodStart));
        }

        using var stopWriting = new CancellationTokenSource();
        var flooding = floods.Select(flood => flood.RunAsync(server.GrpcPort, stopWriting.Token)).ToList();

        // For a while the store is slow: sample what the streams hold unacked, the server's memory and its health (until
        // it names the store slower than the load; before, a ping of the slowed store may time out, which it says too).
        var maxUnacked = 0L;
        var maxResident = before;
        (HttpStatusCode StatusCode, string Body) slowHealth = default;
        var oldestWait = 0.0;
        // At least 12 s, and until each stream has had an ack (60 s at most): a commit's request to the slowed store is
        // held a second for every chunk of it, so one that gathered many batches takes longer than 12 s to answer.
        var slowUntil = DateTime.UtcNow.AddSeconds(12);
        var slowAtMost = DateTime.UtcNow.AddSeconds(60);
        while (DateTime.UtcNow < slowUntil || (floods.Any(flood => flood.Acked == 0) && DateTime.UtcNow < slowAtMost))
        {
            maxUnacked = Math.Max(maxUnacked, floods.Max(flood => flood.Written - flood.Acked));
            maxResident = Math.Max(maxResident, server.ResidentBytes());
            if (slowHealth.Body is not { } body || !body.Contains("the raw store is slower than the load", StringComparison.Ordinal))
            {
                slowHealth = await server.HealthAsync();
                if (slowHealth.StatusCode == HttpStatusCode.ServiceUnavailable)
                {
                    var metrics = await server.Http.GetStringAsync("/metrics");
                    oldestWait = double.Parse(OldestWait().Match(metrics).Groups[1].Value, CultureInfo.InvariantCulture);
                }
            }

            await Task.Delay(100);
        }

        var batchBytes = Flood.Batch(1, floodStart).CalculateSize();
        output.WriteLine($"store slowed: streams wrote {floods.Sum(flood => flood.Written)} batches of {batchBytes} bytes, {floods.Sum(flood => flood.Acked)} acked; " +
            $"most unacked on one stream {maxUnacked}; devices {string.Join("; ", devices)}; server memory {before >> 20} MB before, at most {maxResident >> 20} MB while slow");
        output.WriteLine($"health while slow: {slowHealth.StatusCode} {slowHealth.Body}; telemetry_commit_oldest_wait_seconds {oldestWait}");

        Assert.Equal(HttpStatusCode.ServiceUnavailable, slowHealth.StatusCode);
        Assert.Contains("the raw store is slower than the load", slowHealth.Body, StringComparison.Ordinal);
        Assert.True(oldestWait > 0, $"the metric showed the oldest batch waiting {oldestWait} s");

        // A stream holds at most its in-flight batches in the server plus what HTTP/2's stream window (128 KiB; Kestrel's
        // own default is 768 KiB) lets through unread; it is not read further until acks free room.
        var bound = InFlightPerStream + (128 * 1024 / batchBytes) + 8;
        Assert.True(maxUnacked <= bound, $"a stream had {maxUnacked} batches unacked; the server should hold back at {bound}");
        Assert.True(floods.All(flood => flood.Acked > 0), "the slow store acked nothing");
        Assert.True(maxResident - before < 256L << 20, $"the server's memory grew by {(maxResident - before) >> 20} MB while the store was slow");

        // The store is fast again: everything resumes by itself.
        proxy.Delay = TimeSpan.Zero;
        await stopWriting.CancelAsync();
        await Task.WhenAll(flooding);
        await Task.WhenAll(load);
        var health = await Eventually.ReadAsync(server.HealthAsync, answer => answer.StatusCode == HttpStatusCode.OK);
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);

        await series.FlushAsync();
        foreach (var device in devices)
        {
            await device.AssertStoredOnceAsync(server, output);
        }

        foreach (var flood in floods)
        {
            Assert.Equal(flood.Written, flood.Acked);
            var rows = await server.RawHeartRatesAsync(flood.PatientId, floodStart, floodStart.AddHours(1));
            Assert.Equal(flood.Written * FloodReadings, rows.Count);
            Assert.Equal(rows.Count, rows.Distinct().Count());
        }
    }

    [Fact]
    public async Task With_the_commit_queue_full_a_grpc_stream_is_not_read_on_until_its_batch_commits()
    {
        const int Streams = 4;
        await using var series = await VictoriaMetrics.StartNewAsync();
        await using var proxy = new FaultyProxy(series.Port);
        await using var server = await StartOnAsync(proxy, new Dictionary<string, string>
        {
            ["Telemetry__Ingest__CommitQueueCapacity"] = "2",
            ["Telemetry__Ingest__MaxInFlightBatchesPerStream"] = "64",
        });

        proxy.Delay = TimeSpan.FromMilliseconds(500);
        var floodStart = DateTimeOffset.UtcNow.AddHours(-3);
        var floods = new List<Flood>();
        for (var i = 0; i < Streams; i++)
        {
            var deviceId = $"full-queue-{i}";
            floods.Add(new Flood(deviceId, $"p-full-queue-{i}", await server.ProvisionAsync(deviceId, $"p-full-queue-{i}"), floodStart));
        }

        using var stopWriting = new CancellationTokenSource();
        var flooding = floods.Select(flood => flood.RunAsync(server.GrpcPort, stopWriting.Token)).ToList();

        // Each stream could have 64 batches in flight; with the queue full, the server reads no further than the one
        // batch per stream that found it full, instead of decoding the rest and holding them. Watched for 6 s, and on
        // (up to 20 s) until the queue has been seen full: on a busy machine the first commits can take that long.
        var (mostQueued, mostWaiting) = (0, 0);
        var watchedFor = DateTime.UtcNow.AddSeconds(6);
        for (var until = DateTime.UtcNow.AddSeconds(20); DateTime.UtcNow < until && (DateTime.UtcNow < watchedFor || mostQueued < 2); await Task.Delay(50))
        {
            var metrics = await server.Http.GetStringAsync("/metrics");
            mostQueued = Math.Max(mostQueued, int.Parse(Queued().Match(metrics).Groups[1].Value, CultureInfo.InvariantCulture));
            mostWaiting = Math.Max(mostWaiting, int.Parse(WaitingForRoom().Match(metrics).Groups[1].Value, CultureInfo.InvariantCulture));
        }

        output.WriteLine($"most batches queued {mostQueued}, waiting for room in the queue {mostWaiting}; {string.Join("; ", floods)}");
        Assert.Equal(2, mostQueued);
        Assert.InRange(mostWaiting, 0, Streams);

        proxy.Delay = TimeSpan.Zero;
        await stopWriting.CancelAsync();
        await Task.WhenAll(flooding);
        Assert.All(floods, flood => Assert.Equal(flood.Written, flood.Acked));
    }

    /// <summary>
    /// A server whose raw store is VictoriaMetrics behind <paramref name="proxy"/>, patient with it (a minute per
    /// request), with no limit on a device's message rate, and <paramref name="ingest"/>'s settings.
    /// </summary>
    private static Task<TelemetryServer> StartOnAsync(FaultyProxy proxy, Dictionary<string, string> ingest) =>
        TelemetryServer.StartNewAsync(new Dictionary<string, string>(ingest)
        {
            ["Telemetry__Storage__RawStore"] = "VictoriaMetrics",
            ["Telemetry__Storage__VictoriaMetrics__Url"] = $"http://127.0.0.1:{proxy.Port}",
            ["Telemetry__Storage__VictoriaMetrics__RequestTimeout"] = "00:01:00",
            ["Telemetry__Ingest__MaxMessagesPerSecondPerDevice"] = "1000000",
        });

    [GeneratedRegex(@"^telemetry_commit_oldest_wait_seconds(?:\{[^}]*\})? ([0-9.eE+-]+)", RegexOptions.Multiline)]
    private static partial Regex OldestWait();

    [GeneratedRegex(@"^telemetry_commit_queued(?:\{[^}]*\})? ([0-9]+)", RegexOptions.Multiline)]
    private static partial Regex Queued();

    [GeneratedRegex(@"^telemetry_commit_waiting_for_room(?:\{[^}]*\})? ([0-9]+)", RegexOptions.Multiline)]
    private static partial Regex WaitingForRoom();

    /// <summary>A device on a gRPC stream that writes batches as fast as the stream takes them and counts the acks.</summary>
    private sealed class Flood(string deviceId, string patientId, string token, DateTimeOffset start)
    {
        private long _written;
        private long _acked;

        public string PatientId { get; } = patientId;

        public long Written => Interlocked.Read(ref _written);

        public long Acked => Interlocked.Read(ref _acked);

        /// <summary>Batch n (from 1): <see cref="FloodReadings"/> heart rates a millisecond apart, after those of batch n - 1.</summary>
        public static VitalBatch Batch(ulong seq, DateTimeOffset start)
        {
            var series = new VitalSeries { Kind = "heart_rate", Unit = "/min" };
            for (var i = 0; i < FloodReadings; i++)
            {
                series.TimeDeltasMs.Add(i == 0 ? 0 : 1);
                series.Values.Add(60 + (i % 40));
            }

            return new VitalBatch { Seq = seq, BaseTimeMs = start.ToUnixTimeMilliseconds() + (((long)seq - 1) * FloodReadings), Series = { series } };
        }

        /// <summary>Writes until <paramref name="stopWriting"/> is cancelled, then closes its side and reads the remaining acks.</summary>
        public async Task RunAsync(int grpcPort, CancellationToken stopWriting)
        {
            using var channel = GrpcChannel.ForAddress($"http://127.0.0.1:{grpcPort}");
            using var call = new Ingest.IngestClient(channel).Stream(new Metadata { { "authorization", $"Bearer {token}" } });
            var acks = Task.Run(async () =>
            {
                await foreach (var ack in call.ResponseStream.ReadAllAsync())
                {
                    Assert.Equal(AckStatus.Committed, ack.Status);
                    Assert.Equal((ulong)Acked + 1, ack.Seq);
                    Interlocked.Increment(ref _acked);
                }
            });

            // A write held back by the server finishes once acks free room; the stream stops between writes.
            for (ulong seq = 1; !stopWriting.IsCancellationRequested; seq++)
            {
                await call.RequestStream.WriteAsync(Batch(seq, start), CancellationToken.None);
                Interlocked.Increment(ref _written);
            }

            await call.RequestStream.CompleteAsync();
            await acks;
        }

        public override string ToString() => $"{deviceId}: {Written} written, {Acked} acked";
    }
}
