using System.Diagnostics;
using System.Text.Json;

namespace Telemetry.Testing;

/// <summary>
/// A real VictoriaMetrics server (Debian's <c>victoria-metrics</c>) on a loopback port, taking InfluxDB's v2 write API.
/// It keeps one sample per series and millisecond, as InfluxDB keeps one point per series and time, and can be killed
/// and started again on the same data and port.
/// </summary>
internal sealed class VictoriaMetrics : IAsyncDisposable
{
    private const string Binary = "/usr/bin/victoria-metrics";

    private readonly string _data = Path.Combine(Path.GetTempPath(), "telemetry-vm-" + Guid.NewGuid().ToString("N"));
    private readonly HttpClient _http = new();
    private Process? _process;

    private readonly string _retentionPeriod;
    private readonly string? _dedupInterval;

    /// <summary>A server keeping samples for <paramref name="retentionPeriod"/>, deduplicating each series to <paramref name="dedupInterval"/> (null: not at all).</summary>
    public VictoriaMetrics(string retentionPeriod = "100y", string? dedupInterval = "1ms")
    {
        Port = TestPorts.Free();
        _retentionPeriod = retentionPeriod;
        _dedupInterval = dedupInterval;
    }

    public int Port { get; }

    public string Url => $"http://127.0.0.1:{Port}";

    public static async Task<VictoriaMetrics> StartNewAsync(string retentionPeriod = "100y", string? dedupInterval = "1ms")
    {
        var server = new VictoriaMetrics(retentionPeriod, dedupInterval);
        await server.StartAsync();
        return server;
    }

    public async Task StartAsync()
    {
        if (!File.Exists(Binary))
        {
            throw new InvalidOperationException($"{Binary} is missing: install Debian's victoria-metrics package (.ci/run does)");
        }

        var start = new ProcessStartInfo(Binary)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        string[] arguments =
        [
            $"-storageDataPath={_data}",
            $"-httpListenAddr=127.0.0.1:{Port}",
            $"-retentionPeriod={_retentionPeriod}",
            "-search.latencyOffset=0s",
            .. _dedupInterval is null ? [] : new[] { $"-dedup.minScrapeInterval={_dedupInterval}" },
        ];
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        _process = Process.Start(start)!;
        _process.OutputDataReceived += (_, _) => { };
        _process.ErrorDataReceived += (_, _) => { };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        for (var i = 0; i < 200; i++)
        {
            try
            {
                if ((await _http.GetAsync($"{Url}/health")).IsSuccessStatusCode)
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
            }

            await Task.Delay(50);
        }

        throw new InvalidOperationException("VictoriaMetrics did not start");
    }

    /// <summary>
    /// Stops the server as an operator does (SIGTERM): it flushes what it took and exits. (VictoriaMetrics keeps about
    /// the last second of writes in memory, so SIGKILL would lose writes it had answered 204; InfluxDB writes its WAL
    /// first.)
    /// </summary>
    public async Task StopAsync()
    {
        if (_process is { HasExited: false } process)
        {
            _ = Kill(process.Id, SigTerm);
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await process.WaitForExitAsync(timeout.Token);
        }
    }

    private const int SigTerm = 15;

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);

    /// <summary>Makes what was written searchable now, rather than within the second or so it otherwise takes.</summary>
    public async Task FlushAsync() => (await _http.GetAsync($"{Url}/internal/force_flush")).EnsureSuccessStatusCode();

    /// <summary>Every sample of <paramref name="metric"/> (for example <c>vitals_value</c>) with its labels.</summary>
    public async Task<IReadOnlyList<Sample>> ExportAsync(string metric)
    {
        await FlushAsync();
        using var response = await _http.PostAsync($"{Url}/api/v1/export", new FormUrlEncodedContent([new("match[]", $"{{__name__=\"{metric}\"}}")]));
        response.EnsureSuccessStatusCode();
        var samples = new List<Sample>();
        foreach (var line in (await response.Content.ReadAsStringAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            using var series = JsonDocument.Parse(line);
            var labels = series.RootElement.GetProperty("metric").EnumerateObject().ToDictionary(label => label.Name, label => label.Value.GetString()!);
            var values = series.RootElement.GetProperty("values").EnumerateArray().Select(value => value.GetDouble()).ToArray();
            var timestamps = series.RootElement.GetProperty("timestamps").EnumerateArray().Select(value => value.GetInt64()).ToArray();
            for (var i = 0; i < values.Length; i++)
            {
                samples.Add(new Sample(labels, timestamps[i], values[i]));
            }
        }

        return samples;
    }

    public async ValueTask DisposeAsync()
    {
        if (_process is { HasExited: false } process)
        {
            process.Kill();
            await process.WaitForExitAsync();
        }

        _http.Dispose();
        try
        {
            Directory.Delete(_data, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    public sealed record Sample(IReadOnlyDictionary<string, string> Labels, long TimestampMs, double Value);
}
