using System.Collections.Concurrent;
using System.Globalization;
using MQTTnet;
using Telemetry.Testing;
using Xunit.Abstractions;

namespace Telemetry.EndToEnd.Tests;

/// <summary>
/// Nothing acknowledged is lost and nothing resent is stored twice, whatever moment the server dies at: devices stream
/// over MQTT QoS 1 while the server is killed with SIGKILL at random points, again and again. Each device keeps a
/// ledger of what was acked, resends what was not (and, after each restart, the last batches that were, as a device
/// that missed its acks would), and at the end the server holds exactly what was sent, once.
/// </summary>
public sealed class FaultInjectionTests(ITestOutputHelper output)
{
    private const int DeviceCount = 4;
    private const int BatchesPerDevice = 300;
    private const int ReadingsPerBatch = 10;
    private const int Kills = 5;
    private const int Faults = 6;

    [Fact]
    public async Task Acked_readings_survive_repeated_kill_9_at_random_points_of_a_load()
    {
        var random = new Random(Seed());

        await using var server = await TelemetryServer.StartNewAsync();
        // 50 minutes of readings, 10 a batch one second apart, ending 10 minutes ago.
        var start = Devices.RecentMinute(60);
        var ledgers = new List<ResendingDevice>();
        for (var device = 0; device < DeviceCount; device++)
        {
            var deviceId = $"fault-watch-{device}";
            ledgers.Add(new ResendingDevice(deviceId, $"p-fault-{device}", await server.ProvisionAsync(deviceId, $"p-fault-{device}"), start, BatchesPerDevice, ReadingsPerBatch));
        }

        using var loadDone = new CancellationTokenSource(TimeSpan.FromMinutes(4));
        var load = ledgers.Select(ledger => ledger.SendAllAsync(() => Devices.ConnectMqttAsync(server, ledger.DeviceId, ledger.Token), loadDone.Token)).ToList();
        // Each kill comes when the devices together have had a random share of their batches acked, so every kill
        // lands in the middle of the load.
        var total = DeviceCount * BatchesPerDevice;
        var killPoints = Enumerable.Range(0, Kills).Select(_ => random.Next(total / 20, total * 19 / 20)).Order().ToList();
        foreach (var point in killPoints)
        {
            while (ledgers.Sum(ledger => ledger.Acked) < point)
            {
                await Task.Delay(10);
            }

            await server.KillAsync();
            output.WriteLine($"killed at {ledgers.Sum(ledger => ledger.Acked)} acked batches (aimed at {point})");
            await Task.Delay(random.Next(0, 500));
            await server.StartAsync();
        }

        await Task.WhenAll(load);

        await AssertStoredOnceAsync(server, ledgers);
    }

    [Fact]
    public async Task Acked_readings_survive_cut_half_open_and_slow_connections()
    {
        var seed = Seed();
        var random = new Random(seed);
        await using var server = await TelemetryServer.StartNewAsync();
        await using var proxy = new FaultyProxy(server.MqttPort);
        var start = Devices.RecentMinute(60);
        var ledgers = new List<ResendingDevice>();
        for (var device = 0; device < DeviceCount; device++)
        {
            var deviceId = $"net-watch-{device}";
            ledgers.Add(new ResendingDevice(deviceId, $"p-net-{device}", await server.ProvisionAsync(deviceId, $"p-net-{device}"), start, BatchesPerDevice, ReadingsPerBatch));
        }

        // Through the proxy, and an ack that does not come within 2 s counts as lost.
        Task<IMqttClient> ConnectAsync(ResendingDevice ledger) => Devices.ConnectMqttAsync(
            Devices.MqttOptions(proxy.Port, ledger.DeviceId, ledger.DeviceId, ledger.Token).WithCleanSession().WithTimeout(TimeSpan.FromSeconds(2)).Build());
        using var loadDone = new CancellationTokenSource(TimeSpan.FromMinutes(4));
        var load = ledgers.Select(ledger => ledger.SendAllAsync(() => ConnectAsync(ledger), loadDone.Token)).ToList();

        var total = DeviceCount * BatchesPerDevice;
        foreach (var point in Enumerable.Range(0, Faults).Select(_ => random.Next(total / 20, total * 19 / 20)).Order().ToList())
        {
            while (ledgers.Sum(ledger => ledger.Acked) < point && !load.All(task => task.IsCompleted))
            {
                await Task.Delay(10);
            }

            switch (random.Next(3))
            {
                case 0:
                    proxy.CutAll();
                    output.WriteLine($"cut every connection at {ledgers.Sum(l => l.Acked)} acked batches");
                    break;
                case 1:
                    proxy.Blackhole = true;
                    var silence = random.Next(500, 2_500);
                    output.WriteLine($"half-open for {silence} ms at {ledgers.Sum(l => l.Acked)} acked batches, then cut");
                    await Task.Delay(silence);
                    proxy.CutAll();
                    proxy.Blackhole = false;
                    break;
                default:
                    proxy.Delay = TimeSpan.FromMilliseconds(random.Next(20, 120));
                    output.WriteLine($"{proxy.Delay.TotalMilliseconds} ms added each way at {ledgers.Sum(l => l.Acked)} acked batches, for 1.5 s");
                    await Task.Delay(1_500);
                    proxy.Delay = TimeSpan.Zero;
                    break;
            }
        }

        await Task.WhenAll(load);
        await AssertStoredOnceAsync(server, ledgers);
    }

    /// <summary>Every device had every batch acked, and the server holds each reading once, in the raw series and the rollups.</summary>
    private async Task AssertStoredOnceAsync(TelemetryServer server, List<ResendingDevice> ledgers)
    {
        foreach (var ledger in ledgers)
        {
            output.WriteLine(ledger.ToString());
            Assert.Equal(BatchesPerDevice, ledger.Acked);

            // The raw series: every reading once. The rollups the grain rebuilt and kept folding: every reading counted once.
            var to = ledger.Start.AddSeconds(BatchesPerDevice * ReadingsPerBatch).AddMinutes(1);
            var stored = (await server.RawHeartRatesAsync(ledger.PatientId, ledger.Start, to)).Count;
            Assert.Equal(BatchesPerDevice * ReadingsPerBatch, stored);
            var trend = await server.TrendWhenAsync(ledger.PatientId, "heart_rate", ledger.Start, to, "1m", t => t.TotalCount == BatchesPerDevice * ReadingsPerBatch);
            Assert.Equal(BatchesPerDevice * ReadingsPerBatch, trend.TotalCount);
        }

        using var health = await server.Http.GetAsync("/healthz");
        Assert.Equal(System.Net.HttpStatusCode.OK, health.StatusCode);
    }

    /// <summary>A seed for the faults' randomness, printed; TELEMETRY_FAULT_SEED replays a run.</summary>
    private int Seed()
    {
        var seed = int.TryParse(Environment.GetEnvironmentVariable("TELEMETRY_FAULT_SEED"), NumberStyles.Integer, CultureInfo.InvariantCulture, out var given)
            ? given
            : Random.Shared.Next();
        output.WriteLine($"seed {seed} (set TELEMETRY_FAULT_SEED={seed} to replay)");
        return seed;
    }

    [Fact]
    public async Task A_sigterm_in_the_middle_of_a_load_acks_what_it_took_flushes_and_exits()
    {
        await using var server = await TelemetryServer.StartNewAsync();
        var start = Devices.RecentMinute(60);
        var ledger = new ResendingDevice("term-watch", "p-term", await server.ProvisionAsync("term-watch", "p-term"), start, BatchesPerDevice, ReadingsPerBatch);
        using var loadDone = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        var load = ledger.SendAllAsync(() => Devices.ConnectMqttAsync(server, ledger.DeviceId, ledger.Token), loadDone.Token);
        while (ledger.Acked < BatchesPerDevice / 3)
        {
            await Task.Delay(10);
        }

        var ackedAtSignal = ledger.Acked;
        var exitCode = await server.TerminateAsync(TimeSpan.FromSeconds(45));
        var ackedAtExit = ledger.Acked;
        output.WriteLine($"SIGTERM at {ackedAtSignal} acked batches, exited at {ackedAtExit}; exit code {exitCode?.ToString(CultureInfo.InvariantCulture) ?? "none (still running)"}");
        Assert.True(exitCode == 0, server.Output[Math.Max(0, server.Output.IndexOf("Application is shutting down", StringComparison.Ordinal) - 200)..]);

        // It stopped taking publishes at once and told the device to reconnect (DISCONNECT 0x8B), rather than serving it to
        // the end: whether the device published during the drain (its connection ended there, the publish unacked) or
        // not (once the publishes being committed were acked). Should the device not have heard it, the server's last
        // words tell whether it drained a device.
        // The device's client reports its connection's end a moment after its publishes fail, which can be after the
        // server has exited: wait for that report (a bare close, without the DISCONNECT, is reported too, and fails).
        for (var waited = 0; ledger.Disconnects.Count == 0 && waited < 10_000; waited += 20)
        {
            await Task.Delay(20);
        }

        var serverOutput = server.Output;
        Assert.True(
            ledger.Disconnects.Contains(MqttClientDisconnectReason.ServerShuttingDown),
            $"the device was not told the server was shutting down; {ledger}; the server's output from the signal on:\n{serverOutput[Math.Max(0, serverOutput.IndexOf("Application is shutting down", StringComparison.Ordinal))..]}");
        Assert.True(ackedAtExit < BatchesPerDevice, $"the server went on acking to the end of the load: {ackedAtExit} batches");

        await server.StartAsync();
        await load;
        output.WriteLine(ledger.ToString());

        var to = start.AddSeconds(BatchesPerDevice * ReadingsPerBatch).AddMinutes(1);
        var trend = await server.TrendWhenAsync(ledger.PatientId, "heart_rate", start, to, "1m", t => t.TotalCount == BatchesPerDevice * ReadingsPerBatch);
        Assert.Equal(BatchesPerDevice * ReadingsPerBatch, trend.TotalCount);
    }

    [Theory]
    [InlineData("SIGTERM")]
    [InlineData("SIGKILL")]
    public Task A_stop_while_a_device_has_many_publishes_in_flight_loses_nothing_acked_and_stores_nothing_twice(string signal) =>
        StopWhileManyPublishesAreInFlightAsync(signal, []);

    /// <summary>
    /// The same with VictoriaMetrics as the raw store, which shows a write a moment after answering it: the late windows
    /// a grain call recomputed before then are recomputed again once it does, and after a restart. A SIGTERM keeps the
    /// grains until the store shows the last commits; after a SIGKILL, the minutes of the commits applied just before
    /// it are settled from the store after the start.
    /// </summary>
    [Theory]
    [InlineData("SIGTERM")]
    [InlineData("SIGKILL")]
    public async Task A_stop_while_a_device_has_many_publishes_in_flight_keeps_every_trend_whole_with_victoria_metrics(string signal)
    {
        await using var series = await VictoriaMetrics.StartNewAsync();
        await StopWhileManyPublishesAreInFlightAsync(signal, new()
        {
            ["Telemetry__Storage__RawStore"] = "VictoriaMetrics",
            ["Telemetry__Storage__VictoriaMetrics__Url"] = series.Url,
        },
        // The host allows the shutdown the drain (10 s), that wait (15 s) and the silo's own stop (20 s), not only its 30 s.
        expectedInOutput: signal == "SIGTERM" ? "for the raw store to show the last commits before the patient grains deactivate (the shutdown may take 45 s in all)" : "settling their windows from it once it shows them");
    }

    private async Task StopWhileManyPublishesAreInFlightAsync(string signal, Dictionary<string, string> settings, string? expectedInOutput = null)
    {
        const int Batches = 1_500;
        const int ReadingsEach = 100;
        settings["Telemetry__Ingest__MaxMessagesPerSecondPerDevice"] = "100000";
        // The grain's activations and rebuilds, for a failure's message.
        settings["Logging__LogLevel__Telemetry.Grains"] = "Debug";
        await using var server = await TelemetryServer.StartNewAsync(settings);
        var token = await server.ProvisionAsync("term-window", "p-term-window");
        var start = Devices.RecentMinute(60 * 48);
        var acked = new ConcurrentDictionary<int, bool>();

        // Sixteen publishes in flight at a time, each a hundred heart rates a second apart (enough that a commit takes
        // longer than a PUBACK's way out, should one ever leave first); what has no PUBACK is sent again later.
        async Task SendAsync(IEnumerable<int> batches)
        {
            using var client = await Devices.ConnectMqttAsync(server, "term-window", token);
            await Parallel.ForEachAsync(batches, new ParallelOptions { MaxDegreeOfParallelism = 16 }, async (n, _) =>
            {
                try
                {
                    var result = await Devices.PublishAsync(client, "devices/term-window/vitals", Devices.JsonHeartRates((ulong)n, start.AddSeconds((n - 1) * ReadingsEach), [.. Enumerable.Range(0, ReadingsEach).Select(i => 60.0 + ((n + i) % 40))]));
                    if (result.ReasonCode == MqttClientPublishReasonCode.Success)
                    {
                        acked[n] = true;
                    }
                }
                catch (Exception)
                {
                    // The connection ended (the server stopping): no PUBACK, so it is sent again.
                }
            });
        }

        var sending = SendAsync(Enumerable.Range(1, Batches));
        while (acked.Count < Batches / 10 && !sending.IsCompleted)
        {
            await Task.Delay(5);
        }

        if (signal == "SIGKILL")
        {
            await server.KillAsync();
        }
        else
        {
            // A drain: the PUBACKs owed leave before the DISCONNECT, and the process exits cleanly.
            Assert.Equal(0, await server.TerminateAsync(TimeSpan.FromSeconds(45)));
        }

        await sending;
        var ackedAtExit = acked.Count;
        Assert.InRange(ackedAtExit, Batches / 10, Batches - 1);

        // Every batch acked before the stop must be stored (sent again only if it had no PUBACK), and each stored once.
        await server.StartAsync();
        await SendAsync(Enumerable.Range(1, Batches).Where(n => !acked.ContainsKey(n)).ToList());
        output.WriteLine($"acked {ackedAtExit} of {Batches} before the {signal}; {acked.Count} after resending the rest");
        Assert.Equal(Batches, acked.Count);
        var end = start.AddSeconds(Batches * ReadingsEach);
        // (A series server shows what it was sent a moment later: asked again for a few seconds.)
        var stored = await Eventually.ReadAsync(() => server.RawHeartRatesAsync("p-term-window", start, end), rows => rows.Count >= Batches * ReadingsEach);
        Assert.Equal(Batches * ReadingsEach, stored.Count);
        Assert.Equal(stored.Count, stored.Distinct().Count());

        // The rollups clinicians read hold every reading too, whether the grain call that carried it was lost with the
        // process or not; most are from before yesterday, past the days a grain rebuilds when it activates.
        foreach (var resolution in (string[])["1m", "1h", "1d"])
        {
            var trend = await server.TrendWhenAsync("p-term-window", "heart_rate", start.AddDays(-1), end.AddDays(1), resolution, t => t.TotalCount == stored.Count);
            if (trend.TotalCount != stored.Count)
            {
                // What a failure needs to be understood: the windows that differ from the readings sent (each second from
                // the start), and what the server said of its work.
                var length = resolution switch { "1m" => 60L, "1h" => 3_600L, _ => 86_400L };
                var sent = Enumerable.Range(0, Batches * ReadingsEach).Select(i => start.ToUnixTimeSeconds() + i)
                    .GroupBy(second => second / length * length).ToDictionary(group => group.Key, group => (long)group.Count());
                var held = trend.Points.ToDictionary(point => point.Start.ToUnixTimeSeconds(), point => point.Count);
                var differing = sent.Where(window => held.GetValueOrDefault(window.Key) != window.Value)
                    .Select(window => $"{DateTimeOffset.FromUnixTimeSeconds(window.Key):O} holds {held.GetValueOrDefault(window.Key)} of {window.Value}");
                output.WriteLine($"windows that differ: {string.Join(", ", differing.Take(20))}");
                output.WriteLine(server.OwnOutput());
            }

            Assert.True(trend.TotalCount == stored.Count, $"the {resolution} trend holds {trend.TotalCount} readings of {stored.Count}");
        }

        if (expectedInOutput is not null)
        {
            Assert.Contains(expectedInOutput, await server.OutputWhenAsync(expectedInOutput), StringComparison.Ordinal);
        }
    }
}
