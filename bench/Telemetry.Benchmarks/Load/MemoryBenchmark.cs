using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Microsoft.Diagnostics.NETCore.Client;
using Telemetry.Benchmarks.Pipeline;
using Telemetry.Core.Grains;
using Telemetry.Core.Readings;
using Telemetry.Core.Vitals;
using static Telemetry.Benchmarks.CommandLine;

namespace Telemetry.Benchmarks.Load;

/// <summary>
/// Memory per active patient and per idle MQTT connection. First the patients' grains alone, in this process (the
/// managed heap after full collections). Then in the server's resident memory: starts the real server
/// (Release, DuckDB), provisions one device per patient, then
/// <list type="number">
/// <item>makes every patient active: each device uploads a few readings of four vitals (heart rate, SpO2, respiratory
/// rate, temperature), so each patient's grain holds open windows for four vitals and runs its alert engine;</item>
/// <item>opens one idle MQTT 5 connection per device, signed in with its token, spread over several 127.0.0.x source
/// addresses (a loopback address has about 28,000 ephemeral ports).</item>
/// </list>
/// Each step's figure is the growth of the server's resident memory divided by the count, after a pause for the
/// server to settle. For the patients, two more: the growth of the server's managed heap after a full collection (asked
/// for over its diagnostics port), and of what its resident memory holds besides the GC's committed memory (DuckDB's
/// cache, the runtime's own). The GC keeps memory committed that it has no objects in, as much as the busiest moment
/// needed, while memory is plentiful: the resident figure is where the GC stands, the other two what the patients hold.
/// </summary>
/// <remarks>
/// Run: <c>dotnet run -c Release --project bench/Telemetry.Benchmarks -- memory [--patients 100000]
/// [--server-patients N] [--uploads 1] [--connections 100000] [--hold-seconds 0]</c>; <c>--server-patients</c> (the patients made active
/// in the server, by default as many as in process) keeps the run short, as each needs a device provisioned first;
/// <c>--uploads</c> is how many times each device uploads (three minutes of readings each, the later ones closing the
/// patient's minutes);
/// <c>--hold-seconds</c> pauses with the patients active, in this process and then in the server, for a heap dump;
/// <c>--patients 0</c> leaves out the grains in process, <c>--connections 0</c> the connections;
/// <c>--streaming-patients N [--commits 1200]</c> adds grains in process that each apply that many commits, a second
/// apart; <c>--device-grains N</c> adds devices' grains in process, each active as after a sign-in. It raises its open-file limit (the server inherits it), which needs a hard limit above the connections
/// (<c>ulimit -Hn</c>); where it cannot, it measures as many as the limit allows and says so.
/// </remarks>
public static class MemoryBenchmark
{
    private const int Parallelism = 64;
    private const int PortsPerAddress = 25_000;
    private static readonly TimeSpan SettleTime = TimeSpan.FromSeconds(10);

    public static async Task<int> RunAsync(string[] args)
    {
        var patients = Option(args, "--patients", 100_000);
        var serverPatients = Option(args, "--server-patients", patients);
        var connections = Option(args, "--connections", 100_000);
        var openFiles = RaiseOpenFileLimit(connections + 10_000);
        if (openFiles < (ulong)connections + 1_000)
        {
            // Each connection is a file on both ends; the server cannot hold more than its limit allows.
            var possible = (int)Math.Max(0, (long)openFiles - 1_000);
            Console.WriteLine($"the open-file limit is {openFiles:N0} and cannot be raised here (ulimit -Hn): measuring {possible:N0} connections, not {connections:N0}");
            connections = possible;
        }

        var devices = Math.Max(serverPatients, connections);
        Console.WriteLine($"machine: {Environment.ProcessorCount} cores, {GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / (1L << 30)} GiB, {RuntimeInformation.OSDescription}, .NET {Environment.Version}");

        Console.WriteLine("| per | count | memory before (MB) | after (MB) | per item (KB) | took (s) |");
        Console.WriteLine("| --- | ---: | ---: | ---: | ---: | ---: |");
        var hold = TimeSpan.FromSeconds(Option(args, "--hold-seconds", 0));
        if (patients > 0)
        {
            Console.WriteLine(await PatientGrainsInProcessAsync(patients, hold));
        }

        var streaming = Option(args, "--streaming-patients", 0);
        if (streaming > 0)
        {
            Console.WriteLine(await StreamingPatientGrainsInProcessAsync(streaming, Option(args, "--commits", 1_200)));
        }

        var deviceGrains = Option(args, "--device-grains", 0);
        if (deviceGrains > 0)
        {
            Console.WriteLine(await DeviceGrainsInProcessAsync(deviceGrains));
        }

        if (serverPatients == 0 && connections == 0)
        {
            return 0;
        }

        var directory = Directory.CreateTempSubdirectory("telemetry-memory-bench-");
        var sockets = new List<Socket>(connections);
        try
        {
            await using var server = await ServerProcess.StartAsync(Path.Combine(directory.FullName, "telemetry.duckdb"));
            var started = Stopwatch.StartNew();
            var tokens = await ProvisionAsync(server, devices);
            Console.WriteLine($"provisioned {devices:N0} devices in {started.Elapsed.TotalSeconds:0} s");
            // Every resident-memory reading follows a full collection, so before and after are read alike (a collection
            // may hand memory back, and one only before the baseline would make it low against an end point without).
            await SettleAsync(server);
            var heldBefore = await CollectServerAsync(server);
            var before = Resident(server);
            Console.WriteLine($"server resident memory with {devices:N0} devices provisioned: {before / (1 << 20):N0} MB");
            await HoldAsync(server, hold, "with the devices provisioned, before the patients are made active");

            started.Restart();
            var uploads = Option(args, "--uploads", 1);
            for (var upload = 0; upload < uploads; upload++)
            {
                await ActivateAsync(server, tokens, serverPatients, upload, uploads);
            }

            var took = started.Elapsed;
            await SettleAsync(server);
            var held = await CollectServerAsync(server);
            var active = Resident(server);
            var what = $"active patient (4 vitals each, {uploads} upload{(uploads == 1 ? "" : "s")} over HTTP)";
            Console.WriteLine(Row($"{what}, server RSS", serverPatients, before, active, took));
            Console.WriteLine(Row($"{what}, server managed heap after a full collection", serverPatients, heldBefore.Live, held.Live, took));
            Console.WriteLine(Row($"{what}, server memory outside the GC's (RSS less the GC's committed)", serverPatients, heldBefore.Native, held.Native, took));
            await HoldAsync(server, hold, $"with {serverPatients:N0} active patients");

            if (connections == 0)
            {
                return 0;
            }

            started.Restart();
            await ConnectAsync(server, tokens, connections, sockets);
            var connectedIn = started.Elapsed;
            await SettleAsync(server);
            await CollectServerAsync(server);
            var connected = Resident(server);
            var alive = sockets.Count(socket => socket.Connected);
            Console.WriteLine(Row($"idle MQTT 5 connection ({alive:N0} still open after the pause), server RSS", connections, active, connected, connectedIn));
            return 0;
        }
        finally
        {
            foreach (var socket in sockets)
            {
                socket.Dispose();
            }

            directory.Delete(recursive: true);
        }
    }

    /// <summary>
    /// The grains alone, with the silo in this process: the managed heap after a full collection, before and after
    /// <paramref name="patients"/> patients' grains take four vitals each. Native memory (DuckDB's) is not in it.
    /// </summary>
    /// <param name="hold">A pause with the grains active, to take a heap dump of this process (<c>dotnet-gcdump collect -p</c>).</param>
    private static async Task<string> PatientGrainsInProcessAsync(int patients, TimeSpan hold)
    {
        using var silo = InProcessSilo.Start();
        var (before, after, took) = await MeasureHeapAsync(
            () => ApplyAsync(silo.Grains, "warm", 1_000),
            () => ApplyAsync(silo.Grains, "pm", patients));
        if (hold > TimeSpan.Zero)
        {
            Console.WriteLine($"holding {patients:N0} active patients for {hold.TotalSeconds:0} s: process {Environment.ProcessId}");
            await Task.Delay(hold);
        }

        return Row("active patient grain (4 vitals each), managed heap in process", patients, before, after, took);
    }

    /// <summary>
    /// As <see cref="PatientGrainsInProcessAsync"/>, but each patient streams: <paramref name="commits"/> commits of a
    /// reading of each of the four vitals a second, as a watch uploading every second for that long, so that what a grain
    /// keeps per commit it applied shows (its windows close a minute at a time and are written to the store).
    /// </summary>
    private static async Task<string> StreamingPatientGrainsInProcessAsync(int patients, int commits)
    {
        using var silo = InProcessSilo.Start();
        var (before, after, took) = await MeasureHeapAsync(
            () => ApplyAsync(silo.Grains, "warm", 1_000),
            () => StreamAsync(silo.Grains, patients, commits));
        return Row($"streaming patient grain (4 vitals, {commits:N0} commits of one reading each a second), managed heap in process", patients, before, after, took);
    }

    private static async Task StreamAsync(IGrainFactory grains, int patients, int commits)
    {
        VitalKind[] kinds = [VitalKind.HeartRate, VitalKind.OxygenSaturation, VitalKind.RespiratoryRate, VitalKind.BodyTemperature];
        double[] values = [72, 97, 16, 36.8];
        var start = DateTimeOffset.UtcNow.AddSeconds(-commits - 60).ToUnixTimeMilliseconds();
        var commitId = 1_000_000L;
        for (var c = 0; c < commits; c++)
        {
            var timestampMs = start + (c * 1_000L);
            await Parallel.ForAsync(0, patients, new ParallelOptions { MaxDegreeOfParallelism = 256 }, async (i, _) =>
            {
                var readings = new VitalReading[kinds.Length];
                for (var k = 0; k < kinds.Length; k++)
                {
                    readings[k] = new VitalReading(kinds[k], timestampMs, values[k] + (i % 5));
                }

                var id = string.Create(CultureInfo.InvariantCulture, $"ps-{i:D6}");
                await grains.GetGrain<IPatientGrain>(id).ApplyAsync(new PatientReadings(Interlocked.Increment(ref commitId), readings));
            });
        }
    }

    /// <summary>
    /// A device's grain as every sign-in leaves it (each HTTP upload, each MQTT or gRPC connection): active, with its
    /// binding and its secret's salted hash, until Orleans' idle collection. The managed heap in process before and after
    /// <paramref name="devices"/> devices are provisioned.
    /// </summary>
    private static async Task<string> DeviceGrainsInProcessAsync(int devices)
    {
        using var silo = InProcessSilo.Start();
        var (before, after, took) = await MeasureHeapAsync(
            () => ProvisionInProcessAsync(silo.Grains, "warm", 1_000),
            () => ProvisionInProcessAsync(silo.Grains, "dv", devices));
        return Row("device grain (provisioned, as after a sign-in), managed heap in process", devices, before, after, took);
    }

    /// <summary>
    /// The managed heap after full collections before and after <paramref name="work"/> (and how long it took), once
    /// <paramref name="warm"/> has run, so that what the first calls make once is not counted.
    /// </summary>
    private static async Task<(long Before, long After, TimeSpan Took)> MeasureHeapAsync(Func<Task> warm, Func<Task> work)
    {
        await warm();
        var before = GC.GetTotalMemory(forceFullCollection: true);
        var started = Stopwatch.StartNew();
        await work();
        var took = started.Elapsed;
        return (before, GC.GetTotalMemory(forceFullCollection: true), took);
    }

    private static Task ProvisionInProcessAsync(IGrainFactory grains, string prefix, int devices) =>
        Parallel.ForAsync(0, devices, new ParallelOptions { MaxDegreeOfParallelism = 256 }, async (i, _) =>
        {
            var id = string.Create(CultureInfo.InvariantCulture, $"{prefix}-{i:D6}");
            if (await grains.GetGrain<IDeviceGrain>(id).ProvisionAsync($"{id}-patient") is null)
            {
                throw new InvalidOperationException($"device {id} was already provisioned");
            }
        });

    private static async Task ApplyAsync(IGrainFactory grains, string prefix, int patients)
    {
        VitalKind[] kinds = [VitalKind.HeartRate, VitalKind.OxygenSaturation, VitalKind.RespiratoryRate, VitalKind.BodyTemperature];
        double[] values = [72, 97, 16, 36.8];
        var start = DateTimeOffset.UtcNow.AddMinutes(-3).ToUnixTimeMilliseconds();
        var commitId = 0L;
        await Parallel.ForAsync(0, patients, new ParallelOptions { MaxDegreeOfParallelism = 256 }, async (i, _) =>
        {
            var readings = new VitalReading[kinds.Length * 3];
            for (var k = 0; k < kinds.Length; k++)
            {
                for (var r = 0; r < 3; r++)
                {
                    readings[(k * 3) + r] = new VitalReading(kinds[k], start + (r * 60_000L), values[k]);
                }
            }

            var id = string.Create(CultureInfo.InvariantCulture, $"{prefix}-{i:D6}");
            await grains.GetGrain<IPatientGrain>(id).ApplyAsync(new PatientReadings(Interlocked.Increment(ref commitId), readings));
        });
    }

    private static string Row(string what, int count, long before, long after, TimeSpan took) =>
        string.Create(CultureInfo.InvariantCulture,
            $"| {what} | {count:N0} | {before / (1 << 20):N0} | {after / (1 << 20):N0} | {(after - before) / 1024.0 / count:0.0} | {took.TotalSeconds:0} |");

    /// <summary>
    /// Asks the server's runtime, over its diagnostics port, for a full collection (as <c>dotnet-gcdump</c> does), then reads
    /// from its metrics the managed heap that collection left (less its free space), and what the server's resident memory
    /// holds besides the GC's committed memory (DuckDB's cache, the runtime's own). The GC keeps memory committed that it
    /// has no objects in (it gives it back when memory runs short), so the resident figure alone overstates what is held.
    /// </summary>
    private static async Task<(long Live, long Native)> CollectServerAsync(ServerProcess server)
    {
        const long GcHeapCollectKeyword = 0x800000;
        var collections = Metric(await server.Http.GetStringAsync("/metrics"), "dotnet_gc_collections_total", "gen2");
        var client = new DiagnosticsClient(server.Process.Id);
        using (var session = client.StartEventPipeSession(
            new EventPipeProvider("Microsoft-Windows-DotNETRuntime", System.Diagnostics.Tracing.EventLevel.Informational, GcHeapCollectKeyword), requestRundown: false))
        {
            var drained = session.EventStream.CopyToAsync(Stream.Null);
            var asked = Stopwatch.StartNew();
            while (Metric(await server.Http.GetStringAsync("/metrics"), "dotnet_gc_collections_total", "gen2") == collections)
            {
                if (asked.Elapsed > TimeSpan.FromMinutes(1))
                {
                    throw new TimeoutException("the server did not run the full collection it was asked for within a minute");
                }

                await Task.Delay(100);
            }

            await session.StopAsync(CancellationToken.None);
            await drained;
        }

        var metrics = await server.Http.GetStringAsync("/metrics");
        server.Process.Refresh();
        return (
            Metric(metrics, "dotnet_gc_last_collection_heap_size_bytes") - Metric(metrics, "dotnet_gc_last_collection_heap_fragmentation_size_bytes"),
            server.Process.WorkingSet64 - Metric(metrics, "dotnet_gc_last_collection_memory_committed_size_bytes"));
    }

    /// <summary>A metric of the server's, summed over its series, in whole units.</summary>
    private static long Metric(string metrics, string name, string? label = null) => (long)PrometheusText.Sum(metrics, name, label);

    /// <summary>The server's resident memory once it has been left alone for a moment.</summary>
    private static async Task<long> SettleAsync(ServerProcess server)
    {
        await Task.Delay(SettleTime);
        return Resident(server);
    }

    /// <summary>The server's resident memory now.</summary>
    private static long Resident(ServerProcess server)
    {
        server.Process.Refresh();
        return server.Process.WorkingSet64;
    }

    private static async Task HoldAsync(ServerProcess server, TimeSpan hold, string what)
    {
        if (hold > TimeSpan.Zero)
        {
            Console.WriteLine($"holding the server (process {server.Process.Id}) {what} for {hold.TotalSeconds:0} s");
            await Task.Delay(hold);
        }
    }

    private static async Task<string[]> ProvisionAsync(ServerProcess server, int devices)
    {
        var tokens = new string[devices];
        await Parallel.ForAsync(0, devices, new ParallelOptions { MaxDegreeOfParallelism = Parallelism }, async (i, cancellationToken) =>
        {
            using var response = await server.Http.PostAsJsonAsync("/api/devices", new { deviceId = DeviceId(i), patientId = PatientId(i) }, cancellationToken);
            var body = await response.Content.ReadAsStringAsync(cancellationToken);
            if (response.StatusCode != HttpStatusCode.Created)
            {
                throw new InvalidOperationException($"provisioning {DeviceId(i)} answered {(int)response.StatusCode}: {body}");
            }

            using var json = JsonDocument.Parse(body);
            tokens[i] = json.RootElement.GetProperty("token").GetString()!;
        });
        return tokens;
    }

    /// <summary>Each device uploads three readings of each of four vitals from the last minutes: its patient's grain activates and keeps them.</summary>
    private static async Task ActivateAsync(ServerProcess server, string[] tokens, int patients, int upload, int uploads)
    {
        string[] kinds = ["heart_rate", "spo2", "respiratory_rate", "body_temperature"];
        double[] values = [72, 97, 16, 36.8];
        var start = DateTimeOffset.UtcNow.AddMinutes(3 * (upload - uploads));
        await Parallel.ForAsync(0, patients, new ParallelOptions { MaxDegreeOfParallelism = Parallelism }, async (i, cancellationToken) =>
        {
            var readings = new StringBuilder();
            for (var k = 0; k < kinds.Length; k++)
            {
                for (var r = 0; r < 3; r++)
                {
                    readings.Append(readings.Length == 0 ? "" : ",")
                        .Append(CultureInfo.InvariantCulture, $$"""{"kind":"{{kinds[k]}}","time":"{{start.AddSeconds(r * 60):O}}","value":{{values[k]}}}""");
                }
            }

            using var request = new HttpRequestMessage(HttpMethod.Post, $"/api/devices/{DeviceId(i)}/readings")
            {
                Content = new StringContent($$"""{"seq":{{upload + 1}},"readings":[{{readings}}]}""", Encoding.UTF8, "application/json"),
            };
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", tokens[i]);
            using var response = await server.Http.SendAsync(request, cancellationToken);
            if (!response.IsSuccessStatusCode)
            {
                throw new InvalidOperationException($"the upload of {DeviceId(i)} answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(cancellationToken)}");
            }
        });
    }

    /// <summary>
    /// One MQTT 5 connection per device, signed in, then left idle (keep-alive off). The packets are written by hand: a
    /// client library's own buffers and loops for 100,000 connections would crowd the machine the server runs on.
    /// </summary>
    private static async Task ConnectAsync(ServerProcess server, string[] tokens, int connections, List<Socket> sockets)
    {
        var opened = new Socket[connections];
        await Parallel.ForAsync(0, connections, new ParallelOptions { MaxDegreeOfParallelism = Parallelism }, async (i, cancellationToken) =>
        {
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            socket.Bind(new IPEndPoint(new IPAddress([127, 0, 0, (byte)(2 + (i / PortsPerAddress))]), 0));
            await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, server.MqttPort), cancellationToken);
            await socket.SendAsync(Connect(DeviceId(i), tokens[i]), cancellationToken);
            var connack = new byte[64];
            var read = await socket.ReceiveAsync(connack, cancellationToken);
            if (read < 4 || connack[0] != 0x20 || connack[3] != 0)
            {
                throw new InvalidOperationException($"{DeviceId(i)} was not let in: {Convert.ToHexString(connack, 0, read)}");
            }

            opened[i] = socket;
        });
        sockets.AddRange(opened);
    }

    /// <summary>An MQTT 5 CONNECT: clean start, keep-alive off, the device id as client id and user name, its token as password.</summary>
    private static byte[] Connect(string clientId, string token)
    {
        var body = new List<byte>();
        AddString(body, "MQTT");
        body.Add(5);
        body.Add(0xC2);
        body.Add(0);
        body.Add(0);
        body.Add(0);
        AddString(body, clientId);
        AddString(body, clientId);
        AddString(body, token);
        var packet = new List<byte> { 0x10 };
        for (var length = body.Count; ; length >>= 7)
        {
            packet.Add((byte)((length & 0x7F) | (length >= 0x80 ? 0x80 : 0)));
            if (length < 0x80)
            {
                break;
            }
        }

        packet.AddRange(body);
        return [.. packet];
    }

    private static void AddString(List<byte> packet, string value)
    {
        var bytes = Encoding.UTF8.GetBytes(value);
        Span<byte> length = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16BigEndian(length, (ushort)bytes.Length);
        packet.AddRange(length);
        packet.AddRange(bytes);
    }

    private static string DeviceId(int i) => string.Create(CultureInfo.InvariantCulture, $"mem-{i:D6}");

    private static string PatientId(int i) => string.Create(CultureInfo.InvariantCulture, $"pm-{i:D6}");

    /// <summary>
    /// Raises this process's open-file limit to <paramref name="wanted"/> if it may (the server, started from here,
    /// inherits it), else as far as the hard limit allows; returns the limit in force.
    /// </summary>
    private static ulong RaiseOpenFileLimit(int wanted)
    {
        var limit = new ResourceLimit { Current = (ulong)wanted, Maximum = (ulong)wanted };
        if (SetResourceLimit(OpenFiles, ref limit) == 0)
        {
            return (ulong)wanted;
        }

        GetResourceLimit(OpenFiles, out limit);
        limit.Current = Math.Min((ulong)wanted, limit.Maximum);
        SetResourceLimit(OpenFiles, ref limit);
        GetResourceLimit(OpenFiles, out limit);
        return limit.Current;
    }

    private const int OpenFiles = 7;

    [StructLayout(LayoutKind.Sequential)]
    private struct ResourceLimit
    {
        public ulong Current;
        public ulong Maximum;
    }

    [DllImport("libc", EntryPoint = "setrlimit")]
    private static extern int SetResourceLimit(int resource, ref ResourceLimit limit);

    [DllImport("libc", EntryPoint = "getrlimit")]
    private static extern int GetResourceLimit(int resource, out ResourceLimit limit);
}
