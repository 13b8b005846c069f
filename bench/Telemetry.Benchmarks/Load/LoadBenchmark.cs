extern alias simulator;
using System.Diagnostics;
using System.Globalization;
using simulator::Telemetry.Simulator;
using static Telemetry.Benchmarks.CommandLine;

namespace Telemetry.Benchmarks.Load;

/// <summary>
/// The end-to-end load benchmark: starts the real server (Release) on a fresh store and drives it with the Simulator's
/// fleet at rising rates, each for a few seconds, until a rate is not sustained (the acks fall behind what was sent, or
/// the backlog grows). Each step's fleet is new and joins at once; a step is measured once the fleet has caught up (at
/// most the step's length after its warm-up), and the table says when that was. Then it runs again at half the highest
/// sustained rate for latencies. It does this for batched readings over gRPC and MQTT QoS 1, and for one reading per
/// MQTT message, and then drives Debian's Mosquitto, with one subscriber, with the same one-reading MQTT load, and
/// prints the table and the ratio.
/// </summary>
/// <remarks>
/// Run: <c>dotnet run -c Release --project bench/Telemetry.Benchmarks -- load [--step-seconds 10] [--half-seconds 30]
/// [--batch 50] [--start 20000] [--max 4000000] [--bisections 2] [--runs grpc,mqtt,mqtt1,mosquitto]</c>. The soak:
/// <c>-- load --soak-minutes 60 --rate 160000 [--protocol grpc|mqtt] [--batch 50]</c>. The load generator shares the machine with
/// the server, as the targets say; a step the generator itself cannot pace is marked so rather than counted as the
/// server's limit.
/// </remarks>
public static class LoadBenchmark
{
    /// <summary>Readings per second one simulated device sends at most, so its readings stay a millisecond apart.</summary>
    private const int ReadingsPerDevice = 1_000;

    /// <summary>
    /// Messages per second one simulated device sends at most when every message is one reading: a higher rate is
    /// carried by more devices, as a fleet of watches carries it, not by a few fast connections. (Kept from when the
    /// broker read a connection's next publish only after the one before it was committed, so that the runs compare.)
    /// </summary>
    private const int MessagesPerDevice = 50;

    /// <summary>
    /// The least pause between steps, so one step's backlog does not count against the next; after an overloaded step
    /// the pause lasts until the target is quiet (<see cref="SettleAsync"/>).
    /// </summary>
    private static readonly TimeSpan Settle = TimeSpan.FromSeconds(5);

    /// <summary>The longest pause between steps: a target still busy after it is measured as it is.</summary>
    private static readonly TimeSpan SettleLimit = TimeSpan.FromSeconds(90);

    /// <summary>The target's share of one core under which it counts as quiet: its timers and scrapes, no backlog.</summary>
    private const double QuietCpuPercent = 15;

    public static async Task<int> RunAsync(string[] args)
    {
        var stepSeconds = Option(args, "--step-seconds", 10);

        // The half-rate step gives the latencies: about ten probe alerts a second, so 30 s puts its p99 on ~300 alerts
        // rather than on the second-largest of the ~80 an 8-second step holds.
        var halfSeconds = Option(args, "--half-seconds", 30);
        var batch = Option(args, "--batch", 50);
        var start = Option(args, "--start", 20_000);
        var ceiling = Option(args, "--max", 4_000_000);
        var bisections = Option(args, "--bisections", 2);
        var runs = (OptionText(args, "--runs") ?? "grpc,mqtt,mqtt1,mosquitto").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (Option(args, "--soak-minutes", 0) is var soakMinutes and > 0)
        {
            return await SoakAsync(OptionText(args, "--protocol") ?? "grpc", batch, Option(args, "--rate", 150_000), soakMinutes);
        }

        // Checked before the first ladder: a run that cannot go should not cost the quarter of an hour of those before it.
        if (runs.FirstOrDefault(run => run is not ("grpc" or "mqtt" or "mqtt1" or "mosquitto")) is { } unknown)
        {
            Console.Error.WriteLine($"unknown run '{unknown}': grpc, mqtt, mqtt1 or mosquitto");
            return 2;
        }

        if (runs.Contains("mosquitto") && MosquittoProcess.Missing() is { } missing)
        {
            Console.Error.WriteLine($"{missing} (or leave mosquitto out of --runs)");
            return 2;
        }

        Console.WriteLine($"machine: {Environment.ProcessorCount} cores, {GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / (1L << 30)} GiB, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}, .NET {Environment.Version}");
        Console.WriteLine(Step.Header);
        var summary = new List<string>();
        var directory = Directory.CreateTempSubdirectory("telemetry-load-bench-");
        try
        {
            await using var server = await ServerProcess.StartAsync(Path.Combine(directory.FullName, "telemetry.duckdb"), new Dictionary<string, string>
            {
                // The benchmark measures throughput; a device's own limits would measure the limits instead.
                ["Telemetry__Ingest__MaxMessagesPerSecondPerDevice"] = "1000000",
            });
            var telemetry = new Target("telemetry", $"http://127.0.0.1:{server.HttpPort}", server.MqttPort, $"http://127.0.0.1:{server.GrpcPort}", server.AdminToken, server.Process);
            double? oneReadingMax = null;
            foreach (var run in runs.Where(run => run != "mosquitto"))
            {
                var (protocol, size) = run switch
                {
                    "grpc" => ("grpc", batch),
                    "mqtt" => ("mqtt", batch),
                    "mqtt1" => ("mqtt", 1),
                    _ => throw new UnreachableException($"run '{run}' was checked before the first ladder"),
                };
                var (max, half) = await LadderAsync(telemetry, protocol, size, size == 1 ? Math.Max(1_000, start / 10) : start, ceiling, bisections, stepSeconds, halfSeconds);
                summary.Add($"{run}: highest sustained {max?.AckedPerSecond ?? 0:N0} readings/s acknowledged; at half of it, ack p50 {half?.AckP50:0.0} ms, p99 {half?.AckP99:0.0} ms" +
                    (half?.AlertP99 is > 0 ? $", publish-to-alert p50 {half.AlertP50:0.0} ms, p99 {half.AlertP99:0.0} ms" : "") +
                    (max is null ? "" : $"; server CPU {max.ServerCpu:0}%, RSS {max.ServerRssMb:N0} MB"));
                if (run == "mqtt1")
                {
                    oneReadingMax = max?.AckedPerSecond;
                }
            }

            // Stopped before Mosquitto's ladder: left running on the same two cores, its background work (compaction,
            // retention, idle grains collected) would take from the broker's share, and flatter the ratio.
            await server.DisposeAsync();
            if (runs.Contains("mosquitto"))
            {
                await using var mosquitto = await MosquittoProcess.StartAsync();
                var broker = new Target("mosquitto", "", mosquitto.Port, "", null, mosquitto.Process) { Subscriber = mosquitto };
                var (max, _) = await LadderAsync(broker, "mqtt", 1, Math.Max(1_000, start / 10), ceiling, bisections, stepSeconds, stepSeconds);
                summary.Add($"mosquitto (one subscriber): highest sustained {max?.AckedPerSecond ?? 0:N0} messages/s acknowledged");
                if (oneReadingMax is { } ours && max is { AckedPerSecond: > 0 } theirs)
                {
                    summary.Add($"one reading per MQTT message, Telemetry (committed before each ack) / Mosquitto (relayed): {ours / theirs.AckedPerSecond:0.00}x");
                }
            }
        }
        finally
        {
            directory.Delete(recursive: true);
        }

        Console.WriteLine();
        summary.ForEach(Console.WriteLine);
        return 0;
    }

    /// <summary>
    /// The soak: one rate (half the highest sustained, say) for <paramref name="minutes"/>, with a row a minute of what
    /// was sent and acknowledged, ack latency, the server's CPU and memory, and the store's size on disk.
    /// </summary>
    private static async Task<int> SoakAsync(string protocol, int batch, int rate, int minutes)
    {
        var directory = Directory.CreateTempSubdirectory("telemetry-soak-");
        try
        {
            var database = Path.Combine(directory.FullName, "telemetry.duckdb");
            await using var server = await ServerProcess.StartAsync(database, new Dictionary<string, string> { ["Telemetry__Ingest__MaxMessagesPerSecondPerDevice"] = "1000000" });
            var target = new Target("telemetry", $"http://127.0.0.1:{server.HttpPort}", server.MqttPort, $"http://127.0.0.1:{server.GrpcPort}", server.AdminToken, server.Process);
            var devices = Math.Clamp((int)Math.Ceiling(rate / (double)ReadingsPerDevice), 8, 4_000);
            var options = Options(target, protocol, batch, rate, devices, probes: false, seconds: minutes * 60);
            var statistics = new FleetStatistics();
            var fleet = new Fleet(options, statistics);
            var wearables = await fleet.ProvisionAsync(CancellationToken.None);
            Console.WriteLine($"soak: {protocol}, {rate:N0} readings/s in batches of {batch} from {devices} devices, {minutes} minutes");
            Console.WriteLine("| minute | sent/s | acked/s | backlog (readings) | ack p50 ms | ack p99 ms | server CPU % | RSS MB | store on disk MB |");
            Console.WriteLine("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
            using var stop = new CancellationTokenSource();
            var running = wearables.Select(wearable => fleet.RunAsync(wearable, new DeviceLedger(wearable.DeviceId, wearable.PatientId), stop.Token)).ToList();
            var previous = Snapshot.Take(statistics, target);
            for (var minute = 1; minute <= minutes; minute++)
            {
                await Task.Delay(TimeSpan.FromMinutes(1));
                var now = Snapshot.Take(statistics, target);
                var seconds = (now.At - previous.At).TotalSeconds;
                var (p50, p99) = statistics.DrainLatencies();
                var onDisk = directory.EnumerateFiles().Sum(file => file.Length) / (1024.0 * 1024.0);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {minute} | {(now.Sent - previous.Sent) / seconds:N0} | {(now.Acked - previous.Acked) / seconds:N0} | {now.Sent - now.Acked:N0} | {p50:0.0} | {p99:0.0} | {(now.Cpu - previous.Cpu).TotalSeconds / seconds * 100:0} | {now.RssMb:N0} | {onDisk:N0} |"));
                previous = now;
            }

            await stop.CancelAsync();
            await Task.WhenAll(running).WaitAsync(TimeSpan.FromMinutes(2));
            Console.WriteLine($"done: sent {statistics.ReadingsSent:N0}, acked {statistics.ReadingsAcked:N0}, refused batches {statistics.BatchesRefused:N0}");
            return statistics.BatchesRefused == 0 && statistics.ReadingsAcked == statistics.ReadingsSent ? 0 : 1;
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    /// <summary>
    /// Warms the target up at the first rate (not counted: a cold server's first seconds are its JIT and caches, and
    /// with one reading per message a slow first step stops the ladder), then doubles the rate until a step is not
    /// sustained, bisects <paramref name="bisections"/> times between the last two, and runs half the highest for
    /// latencies, for <paramref name="halfSeconds"/>.
    /// </summary>
    private static async Task<(Step? Max, Step? Half)> LadderAsync(Target target, string protocol, int batch, int start, int ceiling, int bisections, int seconds, int halfSeconds)
    {
        var warmUp = await RunStepAsync(target, protocol, batch, start, seconds, probes: false);
        Console.WriteLine(warmUp with { Note = "warm-up, not counted" });
        Step? best = null;
        int? failedAt = null;
        for (var rate = start; rate <= ceiling; rate *= 2)
        {
            var step = await RunStepAsync(target, protocol, batch, rate, seconds, probes: false);
            Console.WriteLine(step);
            if (!step.Sustained)
            {
                failedAt = rate;
                break;
            }

            best = step;
        }

        for (var i = 0; i < bisections && failedAt is { } high; i++)
        {
            var low = best?.TargetRate ?? start / 2;
            var rate = (low + high) / 2;
            var step = await RunStepAsync(target, protocol, batch, rate, seconds, probes: false);
            Console.WriteLine(step);
            if (step.Sustained)
            {
                best = step;
            }
            else
            {
                failedAt = rate;
            }
        }

        if (best is null)
        {
            return (null, null);
        }

        // Half of what was achieved (acknowledged), not of the step's offered rate.
        var half = await RunStepAsync(target, protocol, batch, Math.Max(1, (int)(best.AckedPerSecond / 2)), halfSeconds, probes: protocol == "mqtt" && target.AdminToken is not null);
        Console.WriteLine(half with { Note = "half the highest sustained" });
        return (best, half);
    }

    private static async Task<Step> RunStepAsync(Target target, string protocol, int batch, int rate, int seconds, bool probes)
    {
        var devices = Math.Clamp((int)Math.Ceiling(rate / (double)(batch == 1 ? MessagesPerDevice : ReadingsPerDevice)), 8, 4_000);
        var options = Options(target, protocol, batch, rate, devices, probes, seconds);
        var statistics = new FleetStatistics();
        var fleet = new Fleet(options, statistics);
        var wearables = target.AdminToken is null
            ? [.. Enumerable.Range(1, devices).Select(i => new VirtualWearable($"{options.Prefix}-{i:D4}", $"p-{i:D4}", "unused", seed: i))]
            : await fleet.ProvisionAsync(CancellationToken.None);

        using var stop = new CancellationTokenSource();
        var running = wearables.Select(wearable => fleet.RunAsync(wearable, new DeviceLedger(wearable.DeviceId, wearable.PatientId), stop.Token)).ToList();
        var started = Stopwatch.StartNew();
        var warmUp = TimeSpan.FromSeconds(seconds / 4.0);
        await Task.Delay(warmUp);
        var windowAt = await CatchUpAsync(statistics, rate, started, TimeSpan.FromSeconds(seconds));

        // The server's histogram first: a slow answer from a loaded server must not stretch the window.
        var waitsBefore = await ServerWaits.ReadAsync(target);
        var first = Snapshot.Take(statistics, target);
        statistics.DrainLatencies();
        statistics.DrainAlertLatencies();
        await Task.Delay(TimeSpan.FromSeconds(seconds) - warmUp);
        var last = Snapshot.Take(statistics, target);
        var waitsAfter = await ServerWaits.ReadAsync(target);
        var (ackP50, ackP99) = statistics.DrainLatencies();
        var (alertP50, alertP99) = statistics.DrainAlertLatencies();
        await stop.CancelAsync();
        try
        {
            await Task.WhenAll(running).WaitAsync(TimeSpan.FromMinutes(2));
        }
        catch (Exception exception)
        {
            Console.Error.WriteLine($"  a device ended badly: {exception.Message}");
        }

        await SettleAsync(target);
        var elapsed = (last.At - first.At).TotalSeconds;
        var sent = (last.Sent - first.Sent) / elapsed;
        var acked = (last.Acked - first.Acked) / elapsed;
        var received = target.Subscriber is null ? (double?)null : (last.Received - first.Received) / elapsed;

        // Sustained: the fleet caught up after joining, it sent what was offered (a device whose window is full of
        // publishes waiting for acks sends less: with one reading per message that is how a saturated target shows), what
        // was sent was acknowledged (and, for a broker, delivered), and the backlog neither stood at more than half a
        // second's worth when the window opened nor grew by a quarter of that. (A backlog left by the step's start that
        // drains within the window would otherwise pass, with acks seconds late.) The same for Telemetry and Mosquitto.
        var backlogAtStart = first.Sent - first.Acked;
        var backlogGrowth = (last.Sent - last.Acked) - backlogAtStart;
        var generatorLimited = sent < 0.97 * rate;
        var sustained = windowAt is not null && !generatorLimited && acked >= 0.99 * sent && backlogAtStart <= 0.5 * rate && backlogGrowth <= 0.125 * rate
            && (received is null || received >= 0.99 * sent);
        return new Step(
            target.Name, protocol, batch, devices, rate, windowAt?.TotalSeconds, sent, acked, received, ackP50, ackP99,
            ServerWaits.P99(waitsBefore?.Buckets, waitsAfter?.Buckets),
            probes ? alertP50 : null, probes ? alertP99 : null,
            probes ? ServerWaits.P99(waitsBefore?.AlertBuckets, waitsAfter?.AlertBuckets) : null,
            (last.Cpu - first.Cpu).TotalSeconds / elapsed * 100,
            waitsAfter?.CommitSeconds - waitsBefore?.CommitSeconds is { } committing ? committing / elapsed * 100 : null,
            waitsAfter?.GcPauseSeconds - waitsBefore?.GcPauseSeconds is { } paused ? paused / elapsed * 100 : null,
            (last.GeneratorCpu - first.GeneratorCpu).TotalSeconds / elapsed * 100,
            last.RssMb, sustained,
            generatorLimited ? "under 97% of the offered rate sent: the generator's pace, or devices' windows full of publishes waiting for acks" : "");
    }

    /// <summary>
    /// Waits, at most <paramref name="limit"/>, until the fleet that joined at the step's start has caught up: no more
    /// than half a second's load sent and not yet acknowledged. Devices that all connect at once at full rate cost the
    /// server their joining (sessions, series, grain activations, code not yet compiled for the load); the step measures
    /// the rate held after it, and reports when its measuring window opened. Returns that time from when the devices
    /// were started, or null when the backlog did not fall within the limit (the step then fails).
    /// </summary>
    /// <remarks>
    /// It waits for gRPC streams only in effect: an MQTT device holds at most its window of publishes unacknowledged (a
    /// tenth of a second's load), so an MQTT server that falls behind shows as publishes not sent, and the step fails as
    /// not paced.
    /// </remarks>
    private static async Task<TimeSpan?> CatchUpAsync(FleetStatistics statistics, int rate, Stopwatch started, TimeSpan limit)
    {
        var deadline = started.Elapsed + limit;
        while (statistics.ReadingsSent - statistics.ReadingsAcked > 0.5 * rate)
        {
            if (started.Elapsed >= deadline)
            {
                return null;
            }

            await Task.Delay(TimeSpan.FromMilliseconds(100));
        }

        return started.Elapsed;
    }

    /// <summary>
    /// Waits at least <see cref="Settle"/> and then until the target has used under <see cref="QuietCpuPercent"/> of a
    /// core for a whole second (at most <see cref="SettleLimit"/>). An overloaded step leaves the server working for
    /// tens of seconds after its devices stop: grains folding the readings it took, a checkpoint of the WAL, a GC of a
    /// grown heap. The step after it, the half-rate step above all, would otherwise measure that work's latencies.
    /// </summary>
    private static async Task SettleAsync(Target target)
    {
        await Task.Delay(Settle);
        var waited = Stopwatch.StartNew();
        target.Process.Refresh();
        var before = target.Process.TotalProcessorTime;
        while (waited.Elapsed < SettleLimit)
        {
            await Task.Delay(TimeSpan.FromSeconds(1));
            target.Process.Refresh();
            var now = target.Process.TotalProcessorTime;
            if ((now - before).TotalMilliseconds < QuietCpuPercent * 10)
            {
                return;
            }

            before = now;
        }

        Console.Error.WriteLine($"  {target.Name} still busy {SettleLimit.TotalSeconds:0} s after the step");
    }

    private static SimulatorOptions Options(Target target, string protocol, int batch, int rate, int devices, bool probes, int seconds) => new()
    {
        Url = target.Url,
        MqttHost = "127.0.0.1",
        MqttPort = target.MqttPort,
        GrpcUrl = target.GrpcUrl,
        AdminToken = target.AdminToken ?? "unused",
        Protocol = protocol,
        Devices = devices,
        Rate = (double)rate / devices,
        Batch = batch,

        // The minimal clients, paced from one thread: MQTTnet's client cost the generator about twice the CPU per
        // message, Grpc.Net.Client about three times the lean MQTT client's per reading, taken from the cores the
        // server (or Mosquitto) runs on.
        MqttClient = SimulatorOptions.LeanClient,
        GrpcClient = SimulatorOptions.LeanClient,

        // About ten probe alerts a second across the fleet: each raises and clears an alert, which is measured, not
        // made the load. Each device's first probe comes at a random point of its period, so they arrive evenly from
        // the start of the step.
        AlertProbeSeconds = probes ? Math.Max(1, devices / 10.0) : 0,

        // Enough publishes in flight for the device's pace at a commit time of up to 100 ms, and no more: a deeper
        // window only queues in the device and shows as ack latency.
        Window = Math.Max(1, (int)Math.Ceiling(rate / (double)devices / batch * 0.1)),
        Prefix = $"load-{protocol}{batch}-{rate}-{Random.Shared.Next():x}",
    };

    /// <summary>What is driven: its name, where it listens, and the process whose CPU and memory are measured.</summary>
    private sealed record Target(string Name, string Url, int MqttPort, string GrpcUrl, string? AdminToken, Process Process)
    {
        public MosquittoProcess? Subscriber { get; init; }
    }

    /// <param name="GeneratorCpu">This process's CPU time: the devices, and a broker's subscriber.</param>
    private sealed record Snapshot(DateTime At, long Sent, long Acked, long Received, TimeSpan Cpu, TimeSpan GeneratorCpu, double RssMb)
    {
        public static Snapshot Take(FleetStatistics statistics, Target target)
        {
            target.Process.Refresh();
            return new Snapshot(
                DateTime.UtcNow,
                statistics.ReadingsSent,
                statistics.ReadingsAcked,
                target.Subscriber?.Received ?? 0,
                target.Process.TotalProcessorTime,
                Process.GetCurrentProcess().TotalProcessorTime,
                target.Process.WorkingSet64 / (1024.0 * 1024.0));
        }
    }

    private sealed record Step(
        string Name, string Protocol, int Batch, int Devices, int TargetRate, double? WindowAtSeconds, double SentPerSecond, double AckedPerSecond, double? ReceivedPerSecond,
        double AckP50, double AckP99, double? ServerWaitP99, double? AlertP50, double? AlertP99, double? ServerAlertP99, double ServerCpu, double? CommitBusy, double? ServerGcPause, double GeneratorCpu, double ServerRssMb, bool Sustained, string Note)
    {
        public const string Header =
            "| target | protocol | batch | devices | offered/s | window at s | sent/s | acked/s | delivered/s | ack p50 ms | ack p99 ms | server wait p99 ms | alert p50 ms | alert p99 ms | server alert p99 ms | server CPU % | commit busy % | server GC pause % | generator CPU % | RSS MB | sustained | note |\n" +
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |";

        public override string ToString() =>
            string.Create(CultureInfo.InvariantCulture,
                $"| {Name} | {Protocol} | {Batch} | {Devices} | {TargetRate:N0} | {WindowAtSeconds?.ToString("0.0", CultureInfo.InvariantCulture) ?? "late"} | {SentPerSecond:N0} | {AckedPerSecond:N0} | {ReceivedPerSecond?.ToString("N0", CultureInfo.InvariantCulture) ?? "-"} | {AckP50:0.0} | {AckP99:0.0} | {ServerWaitP99?.ToString("0.0", CultureInfo.InvariantCulture) ?? "-"} | {AlertP50?.ToString("0.0", CultureInfo.InvariantCulture) ?? "-"} | {AlertP99?.ToString("0.0", CultureInfo.InvariantCulture) ?? "-"} | {ServerAlertP99?.ToString("0.0", CultureInfo.InvariantCulture) ?? "-"} | {ServerCpu:0} | {CommitBusy?.ToString("0", CultureInfo.InvariantCulture) ?? "-"} | {ServerGcPause?.ToString("0.0", CultureInfo.InvariantCulture) ?? "-"} | {GeneratorCpu:0} | {ServerRssMb:N0} | {(Sustained ? "yes" : "no")} | {Note} |");
    }

    /// <summary>
    /// What the server's <c>/metrics</c> tell of its commits at one moment: batches answered within each bucket's bound
    /// (seconds, every outcome summed), the time spent committing so far, and alert events handed off within each
    /// bucket's bound of their readings' hand-over (<c>telemetry_alerts_delay_seconds</c>), and the time its garbage
    /// collector has paused it so far.
    /// </summary>
    private sealed record ServerCommits(SortedDictionary<double, double> Buckets, double CommitSeconds, SortedDictionary<double, double> AlertBuckets, double GcPauseSeconds);

    /// <summary>
    /// The server's own wait per batch, from its hand-over to the commit pipeline to the answer (the histogram
    /// <c>telemetry_commit_wait_seconds</c> on <c>/metrics</c>): the server's part of the ack latency, apart from the
    /// network and the generator's own scheduling on the shared cores. How much of the time the commit loop spent
    /// committing (the sum of <c>telemetry_commit_duration_seconds</c>): it commits whatever is waiting once its last
    /// commit ends and the commit interval has passed, so it is busy much of the time at all but low rates. And, for the
    /// probes' alerts, the server's part of their latency, from their readings' hand-over to the alert's hand-off to
    /// the alerts topic (<c>telemetry_alerts_delay_seconds</c>). And the share of the window the server's threads stood
    /// paused for its garbage collector (<c>dotnet_gc_pause_time_seconds_total</c>): every batch and alert in flight
    /// waits out a pause, so a step's tails are read beside it.
    /// </summary>
    private static class ServerWaits
    {
        private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };

        /// <summary>The server's commits so far; null for a broker, or when a server overloaded by the step does not
        /// answer in time (the step is then measured without them).</summary>
        public static async Task<ServerCommits?> ReadAsync(Target target)
        {
            if (target.AdminToken is null)
            {
                return null;
            }

            string body;
            try
            {
                body = await Http.GetStringAsync($"{target.Url}/metrics");
            }
            catch (Exception exception) when (exception is HttpRequestException or TaskCanceledException)
            {
                return null;
            }

            const string Prefix = "telemetry_commit_wait_seconds_bucket{";
            // The raised events only: what the probes time at the client (each probe's clearing is timed by the server too).
            const string AlertPrefix = "telemetry_alerts_delay_seconds_bucket{";
            const string Raised = "type=\"Raised\"";
            const string CommitSum = "telemetry_commit_duration_seconds_sum";
            const string GcPause = "dotnet_gc_pause_time_seconds_total";
            var buckets = new SortedDictionary<double, double>();
            var alertBuckets = new SortedDictionary<double, double>();
            var commitSeconds = 0.0;
            var gcPauseSeconds = 0.0;
            foreach (var line in body.Split('\n'))
            {
                if (line.StartsWith(CommitSum, StringComparison.Ordinal))
                {
                    commitSeconds += PrometheusText.Value(line);
                    continue;
                }

                if (line.StartsWith(GcPause, StringComparison.Ordinal))
                {
                    gcPauseSeconds += PrometheusText.Value(line);
                    continue;
                }

                var bound = line.IndexOf("le=\"", StringComparison.Ordinal);
                var into = line.StartsWith(Prefix, StringComparison.Ordinal) ? buckets
                    : line.StartsWith(AlertPrefix, StringComparison.Ordinal) && line.Contains(Raised, StringComparison.Ordinal) ? alertBuckets
                    : null;
                if (into is null || bound < 0)
                {
                    continue;
                }

                var text = line[(bound + 4)..line.IndexOf('"', bound + 4)];
                var le = text == "+Inf" ? double.PositiveInfinity : double.Parse(text, CultureInfo.InvariantCulture);
                into[le] = into.GetValueOrDefault(le) + PrometheusText.Value(line);
            }

            return new ServerCommits(buckets, commitSeconds, alertBuckets, gcPauseSeconds);
        }

        /// <summary>The 99th percentile in milliseconds of the waits between two readings, interpolated within its bucket.</summary>
        public static double? P99(SortedDictionary<double, double>? before, SortedDictionary<double, double>? after)
        {
            if (before is null || after is null || after.Count == 0)
            {
                return null;
            }

            var total = after.Last().Value - before.GetValueOrDefault(double.PositiveInfinity);
            if (total <= 0)
            {
                return null;
            }

            var rank = 0.99 * total;
            var (lower, below) = (0.0, 0.0);
            foreach (var (le, cumulative) in after)
            {
                var count = cumulative - before.GetValueOrDefault(le);
                if (count >= rank)
                {
                    return double.IsPositiveInfinity(le) ? lower * 1_000 : (lower + ((le - lower) * (rank - below) / Math.Max(count - below, 1))) * 1_000;
                }

                (lower, below) = (le, count);
            }

            return lower * 1_000;
        }
    }
}
