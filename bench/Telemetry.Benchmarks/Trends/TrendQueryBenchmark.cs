using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Telemetry.Core.Rollups;
using Telemetry.Core.Vitals;
using Telemetry.Storage.DuckDb;
using static Telemetry.Benchmarks.CommandLine;

namespace Telemetry.Benchmarks.Trends;

/// <summary>
/// The 30-day, 1-hour trend query through the REST API, against a store holding many patients' rollups.
/// Loads the rollups through the store's own write path and compaction, hour by hour as grains would write them
/// (1-hour windows of heart rate and SpO2, plus 1-day windows), then starts the real server on that file and asks for
/// one patient's trend at a time: first for patients nobody has asked about yet (their grain activates), then again.
/// </summary>
/// <remarks>
/// Run: <c>dotnet run -c Release --project bench/Telemetry.Benchmarks -- trends [--patients 10000] [--days 30] [--queries 2000] [--data dir]</c>.
/// With <c>--data</c> the loaded store is kept in that folder and reused by the next run.
/// </remarks>
public static class TrendQueryBenchmark
{
    private static readonly VitalKind[] Kinds = [VitalKind.HeartRate, VitalKind.OxygenSaturation];

    public static async Task<int> RunAsync(string[] args)
    {
        var patients = Option(args, "--patients", 10_000);
        var days = Option(args, "--days", 30);
        var queries = Option(args, "--queries", 2_000);
        var data = OptionText(args, "--data");
        var directory = data is null ? Directory.CreateTempSubdirectory("telemetry-trend-bench-") : Directory.CreateDirectory(data);
        try
        {
            var path = Path.Combine(directory.FullName, "telemetry.duckdb");
            var now = DateTimeOffset.UtcNow;
            var reused = File.Exists(path);
            if (reused)
            {
                // A store kept from an earlier run (--data): its last hours are now in the past, which trends do not mind.
                Console.WriteLine($"reusing {path}");
            }
            else
            {
                var loading = Stopwatch.StartNew();
                var windows = await LoadAsync(path, patients, days, now);
                Console.WriteLine($"loaded {windows:N0} windows for {patients:N0} patients x {days} days in {loading.Elapsed:mm\\:ss}; file {new FileInfo(path).Length / 1_048_576:N0} MiB");
            }

            await using var server = await ServerProcess.StartAsync(path);
            var random = new Random(7);
            var cold = Enumerable.Range(0, Math.Min(queries / 2, patients)).Select(_ => random.Next(Math.Max(1, patients - 50))).Distinct().ToArray();
            var to = now;
            var from = now.AddDays(-days);

            // A few requests first so the JIT and connection pool are warm; these patients are not measured cold.
            for (var i = 0; i < 50; i++)
            {
                await TrendAsync(server.Http, PatientId(patients - 1 - i), from, to, expectAtLeast: 0);
            }

            var expected = reused ? 1 : (days * 24) - 1;
            var first = await MeasureAsync(server.Http, cold, from, to, expected);
            var again = await MeasureAsync(server.Http, [.. Enumerable.Range(0, queries).Select(_ => cold[random.Next(cold.Length)])], from, to, expected);
            await server.DisposeAsync();
            var store = await MeasureStoreAsync(path, cold, from, to, queries, random);
            Console.WriteLine();
            Console.WriteLine($"{days}-day 1-hour trend of one patient, GET /api/patients/{{id}}/trends?kind=heart_rate&resolution=1h ({patients:N0} patients x {days} days in the store)");
            Console.WriteLine("| requests | n | p50 ms | p90 ms | p99 ms | max ms |");
            Console.WriteLine("| --- | --- | --- | --- | --- | --- |");
            Print("first read of a patient (grain activates)", first);
            Print("repeated reads", again);
            Print("the store's part alone (in process, no HTTP, no grain)", store);
            return 0;
        }
        finally
        {
            if (data is null)
            {
                directory.Delete(recursive: true);
            }
        }
    }

    private static async Task<long> LoadAsync(string path, int patients, int days, DateTimeOffset now)
    {
        var clock = new ManualClock();
        var options = Options.Create(new DuckDbOptions { Path = path, CompactionInterval = TimeSpan.FromDays(7) });
        using var database = new DuckDbDatabase(options);
        using var store = new DuckDbRollupStore(database, options, clock, NullLogger<DuckDbRollupStore>.Instance);
        await store.StartAsync(CancellationToken.None);
        var hourMs = Resolution.Hour.Milliseconds();
        var end = Resolution.Hour.WindowStart(now.ToUnixTimeMilliseconds());
        var start = Resolution.Day.WindowStart(end - (days * Resolution.Day.Milliseconds()));
        var random = new Random(1);
        long written = 0;
        var batch = new List<Rollup>(patients * Kinds.Length);
        var daily = new Dictionary<(int, VitalKind), RollupWindow>();
        for (var hour = start; hour < end; hour += hourMs)
        {
            batch.Clear();
            for (var patient = 0; patient < patients; patient++)
            {
                foreach (var kind in Kinds)
                {
                    var window = Window(random, kind, hour, hourMs);
                    batch.Add(new Rollup(PatientId(patient), kind, Resolution.Hour, window));
                    var day = Resolution.Day.WindowStart(hour);
                    daily[(patient, kind)] = daily.TryGetValue((patient, kind), out var sofar) ? sofar.Merge(window) : window with { StartMs = day };
                }
            }

            // A day's windows close with its last hour, as the grains close them.
            if (Resolution.Day.WindowStart(hour + hourMs) != Resolution.Day.WindowStart(hour))
            {
                batch.AddRange(daily.Select(entry => new Rollup(PatientId(entry.Key.Item1), entry.Key.Item2, Resolution.Day, entry.Value)));
                daily.Clear();
            }

            await store.WriteAsync(batch);
            written += batch.Count;
            clock.Now = DateTimeOffset.FromUnixTimeMilliseconds(hour + hourMs + 1_000);
            if ((hour + hourMs - start) % Resolution.Day.Milliseconds() == 0)
            {
                await store.CompactAsync();
                Console.WriteLine($"day {(hour + hourMs - start) / Resolution.Day.Milliseconds()} of {days} written and compacted");
            }
        }

        await store.StopAsync(CancellationToken.None);
        return written;
    }

    private static async Task<double[]> MeasureStoreAsync(string path, int[] patients, DateTimeOffset from, DateTimeOffset to, int queries, Random random)
    {
        var options = Options.Create(new DuckDbOptions { Path = path });
        using var database = new DuckDbDatabase(options);
        using var store = new DuckDbRollupStore(database, options, TimeProvider.System, NullLogger<DuckDbRollupStore>.Instance);
        var times = new double[queries];
        for (var i = -100; i < queries; i++)
        {
            // The first hundred warm the freshly opened file's cache and are not counted.
            var started = Stopwatch.GetTimestamp();
            await store.QueryAsync(PatientId(patients[random.Next(patients.Length)]), VitalKind.HeartRate, Resolution.Hour, from.ToUnixTimeMilliseconds(), to.ToUnixTimeMilliseconds());
            if (i >= 0)
            {
                times[i] = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
            }
        }

        Array.Sort(times);
        return times;
    }

    private static RollupWindow Window(Random random, VitalKind kind, long startMs, long lengthMs)
    {
        var (baseline, spread) = kind == VitalKind.HeartRate ? (72.0, 12.0) : (96.5, 1.5);
        var count = 3_000 + random.Next(600);
        var mean = baseline + ((random.NextDouble() - 0.5) * spread);
        var deviation = spread / 4;
        var sum = mean * count;
        var sumOfSquares = count * ((deviation * deviation) + (mean * mean));
        var last = mean + ((random.NextDouble() - 0.5) * deviation);
        return new RollupWindow(startMs, count, sum, mean - (2 * deviation), mean + (2 * deviation), sumOfSquares, last, startMs + lengthMs - random.Next(1, 5_000));
    }

    private static async Task<double[]> MeasureAsync(HttpClient http, int[] patients, DateTimeOffset from, DateTimeOffset to, int expected)
    {
        var times = new double[patients.Length];
        for (var i = 0; i < patients.Length; i++)
        {
            var started = Stopwatch.GetTimestamp();
            await TrendAsync(http, PatientId(patients[i]), from, to, expectAtLeast: expected);
            times[i] = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        }

        Array.Sort(times);
        return times;
    }

    private static async Task TrendAsync(HttpClient http, string patientId, DateTimeOffset from, DateTimeOffset to, int expectAtLeast)
    {
        var url = string.Create(CultureInfo.InvariantCulture, $"/api/patients/{patientId}/trends?kind=heart_rate&resolution=1h&from={Uri.EscapeDataString(from.ToString("O"))}&to={Uri.EscapeDataString(to.ToString("O"))}");
        using var response = await http.GetAsync(url, HttpCompletionOption.ResponseHeadersRead);
        response.EnsureSuccessStatusCode();
        await using var body = await response.Content.ReadAsStreamAsync();
        using var trend = await JsonDocument.ParseAsync(body);
        var points = trend.RootElement.GetProperty("points").GetArrayLength();
        if (points < expectAtLeast)
        {
            throw new InvalidOperationException($"{patientId}: {points} windows, expected at least {expectAtLeast}");
        }
    }

    private static void Print(string label, double[] sorted) =>
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"| {label} | {sorted.Length:N0} | {Percentile(sorted, 0.50):F2} | {Percentile(sorted, 0.90):F2} | {Percentile(sorted, 0.99):F2} | {sorted[^1]:F2} |"));

    private static double Percentile(double[] sorted, double quantile) => sorted[(int)Math.Min(sorted.Length - 1, Math.Ceiling(quantile * sorted.Length) - 1)];

    private static string PatientId(int patient) => $"patient-{patient:D5}";

    private sealed class ManualClock : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = DateTimeOffset.UnixEpoch;

        public override DateTimeOffset GetUtcNow() => Now;
    }
}
