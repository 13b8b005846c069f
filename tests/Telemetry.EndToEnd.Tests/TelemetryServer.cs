using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text;
using Telemetry.Testing;

namespace Telemetry.EndToEnd.Tests;

/// <summary>
/// The real Telemetry server as its own process on loopback, on free ports, with its data in a temporary folder.
/// It can be killed hard (SIGKILL) and started again on the same data and ports.
/// </summary>
public sealed class TelemetryServer : IAsyncDisposable
{
    private readonly StringBuilder _output = new();
    private readonly IReadOnlyDictionary<string, string> _settings;
    private readonly TestCertificates? _tls;
    private Process? _process;

    /// <param name="settings">Extra configuration, as environment variables (<c>Telemetry__Ingest__MaxMessageBytes</c>).</param>
    /// <param name="tls">
    /// Certificates to serve TLS with: the plain ports are then turned off, devices may sign in with certificates from
    /// the test authority, and <see cref="Http"/> speaks HTTPS, trusting that authority.
    /// </param>
    /// <param name="adminToken">The admin token; servers of one cluster share one. A fresh random one by default.</param>
    public TelemetryServer(IReadOnlyDictionary<string, string>? settings = null, TestCertificates? tls = null, string? adminToken = null)
    {
        _settings = settings ?? new Dictionary<string, string>();
        _tls = tls;
        DataDirectory = Path.Combine(Path.GetTempPath(), "telemetry-e2e-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(DataDirectory);
        AdminToken = adminToken ?? Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
        HttpPort = TestPorts.Free();
        GrpcPort = TestPorts.Free();
        MqttPort = TestPorts.Free();
        SiloPort = TestPorts.Free();
        HttpsPort = TestPorts.Free();
        MqttTlsPort = TestPorts.Free();
        Http = ClientWith(AdminToken);
    }

    public string DataDirectory { get; }

    public string AdminToken { get; }

    public int HttpPort { get; }

    public int GrpcPort { get; }

    public int MqttPort { get; }

    public int SiloPort { get; }

    /// <summary>HTTPS and gRPC over TLS; listening only with <see cref="TestCertificates"/>.</summary>
    public int HttpsPort { get; }

    /// <summary>MQTT over TLS; listening only with <see cref="TestCertificates"/>.</summary>
    public int MqttTlsPort { get; }

    /// <summary>An HTTP client for the REST API, carrying the admin token.</summary>
    public HttpClient Http { get; }

    /// <summary>Everything the server printed so far, for failure messages.</summary>
    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    /// <summary>
    /// What the server said of its own work, for a failure's message: the entries of the project's own loggers and every
    /// warning or error, without the hosts' informational chatter (requests, placement, options).
    /// </summary>
    public string OwnOutput()
    {
        var own = new StringBuilder();
        var keep = false;
        foreach (var line in Output.Split('\n'))
        {
            if (line.Length > 6 && line[4] == ':' && line[5] == ' ' && !char.IsWhiteSpace(line[0]))
            {
                keep = !line.StartsWith("info: ", StringComparison.Ordinal) || line.AsSpan(6).StartsWith("Telemetry.", StringComparison.Ordinal);
            }

            if (keep)
            {
                own.AppendLine(line.TrimEnd('\r'));
            }
        }

        return own.ToString();
    }

    /// <summary>
    /// The output once it holds <paramref name="text"/>, or as it is after 10 s: the server logs through a queue and
    /// its output is read as it comes, so what a test caused reaches <see cref="Output"/> a moment later.
    /// </summary>
    public async Task<string> OutputWhenAsync(string text)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!Output.Contains(text, StringComparison.Ordinal) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(100);
        }

        return Output;
    }

    public static async Task<TelemetryServer> StartNewAsync(IReadOnlyDictionary<string, string>? settings = null)
    {
        var server = new TelemetryServer(settings);
        await server.StartAsync();
        return server;
    }

    public async Task StartAsync()
    {
        var start = new ProcessStartInfo("dotnet", [ServerAssembly()])
        {
            WorkingDirectory = DataDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.Environment["ASPNETCORE_ENVIRONMENT"] = "Production";
        start.Environment["Telemetry__Server__ListenAddress"] = "127.0.0.1";
        start.Environment["Telemetry__Server__HttpPort"] = HttpPort.ToString();
        start.Environment["Telemetry__Server__GrpcPort"] = GrpcPort.ToString();
        start.Environment["Telemetry__Server__MqttPort"] = MqttPort.ToString();
        start.Environment["Telemetry__Server__SiloPort"] = SiloPort.ToString();
        start.Environment["Telemetry__Server__HttpsPort"] = HttpsPort.ToString();
        start.Environment["Telemetry__Server__MqttTlsPort"] = MqttTlsPort.ToString();
        if (_tls is not null)
        {
            start.Environment["Telemetry__Server__HttpPort"] = "0";
            start.Environment["Telemetry__Server__GrpcPort"] = "0";
            start.Environment["Telemetry__Server__MqttPort"] = "0";
            start.Environment["Telemetry__Server__Tls__CertificatePath"] = _tls.ServerCertificatePath;
            start.Environment["Telemetry__Server__Tls__KeyPath"] = _tls.ServerKeyPath;
            start.Environment["Telemetry__Server__Tls__DeviceCertificateAuthorityPath"] = _tls.AuthorityPath;
        }

        start.Environment["Telemetry__Storage__DuckDb__Path"] = Path.Combine(DataDirectory, "telemetry.duckdb");
        start.Environment["Telemetry__Auth__AdminToken"] = AdminToken;
        foreach (var (key, value) in _settings)
        {
            start.Environment[key] = value;
        }

        _process = Process.Start(start) ?? throw new InvalidOperationException("dotnet did not start");
        _process.OutputDataReceived += (_, e) => Append(e.Data);
        _process.ErrorDataReceived += (_, e) => Append(e.Data);
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();

        var deadline = DateTime.UtcNow.AddSeconds(90);
        while (DateTime.UtcNow < deadline)
        {
            if (_process.HasExited)
            {
                // Waited for again without a timeout: that also waits for the last of its output to be read.
                _process.WaitForExit();
                throw new InvalidOperationException($"The server exited with {_process.ExitCode}:\n{Output}");
            }

            // Each probe bounded: a port held by another program may take the connection and never answer.
            using var probe = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            try
            {
                using var health = await Http.GetAsync("/healthz", probe.Token);
                if (health.StatusCode == HttpStatusCode.OK)
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
                // Not listening yet.
            }
            catch (OperationCanceledException) when (probe.IsCancellationRequested)
            {
                // Not answering yet.
            }

            await Task.Delay(200);
        }

        throw new TimeoutException($"The server did not become healthy:\n{Output}");
    }

    /// <summary>
    /// Asks the server to stop with SIGTERM, as an orchestrator does, and waits up to <paramref name="timeout"/> for it
    /// to exit; returns its exit code, or null when it was still running then (it is then killed).
    /// </summary>
    public async Task<int?> TerminateAsync(TimeSpan timeout)
    {
        if (_process is not { HasExited: false } process)
        {
            return _process?.ExitCode;
        }

        Assert.Equal(0, SendSignal(process.Id, 15));
        using var wait = new CancellationTokenSource(timeout);
        try
        {
            await process.WaitForExitAsync(wait.Token);
            return process.ExitCode;
        }
        catch (OperationCanceledException)
        {
            await KillAsync();
            return null;
        }
    }

    /// <summary><c>/healthz</c>'s answer: 200 or 503, and each check's word.</summary>
    public async Task<(HttpStatusCode StatusCode, string Body)> HealthAsync()
    {
        using var response = await Http.GetAsync("/healthz");
        return (response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    /// <summary>The server process's resident memory now (<c>VmRSS</c>), in bytes.</summary>
    public long ResidentBytes()
    {
        var status = File.ReadAllLines($"/proc/{_process!.Id}/status");
        var line = status.First(line => line.StartsWith("VmRSS:", StringComparison.Ordinal));
        return long.Parse(line["VmRSS:".Length..].Trim().Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture) * 1024;
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int SendSignal(int pid, int signal);

    /// <summary>Ends the server at once with SIGKILL: no shutdown code runs.</summary>
    public async Task KillAsync()
    {
        if (_process is { HasExited: false })
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }
    }

    /// <summary>
    /// A development token from the server's own command (<c>token --role …</c>), run as its own process on this
    /// server's configuration.
    /// </summary>
    public async Task<string> MintTokenAsync(params string[] arguments)
    {
        var start = new ProcessStartInfo("dotnet", [ServerAssembly(), "token", .. arguments])
        {
            WorkingDirectory = DataDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.Environment["Telemetry__Storage__DuckDb__Path"] = Path.Combine(DataDirectory, "telemetry.duckdb");
        foreach (var (key, value) in _settings)
        {
            start.Environment[key] = value;
        }

        using var command = Process.Start(start) ?? throw new InvalidOperationException("dotnet did not start");
        var output = command.StandardOutput.ReadToEndAsync();
        var error = command.StandardError.ReadToEndAsync();
        await command.WaitForExitAsync();
        Assert.True(command.ExitCode == 0, $"token {string.Join(' ', arguments)} exited with {command.ExitCode}: {await error}");
        return (await output).Trim();
    }

    /// <summary>An HTTP client for this server carrying <paramref name="token"/> (none when null).</summary>
    public HttpClient ClientWith(string? token)
    {
        var client = _tls is null
            ? new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{HttpPort}") }
            : new HttpClient(_tls.Handler()) { BaseAddress = new Uri($"https://127.0.0.1:{HttpsPort}") };
        if (token is not null)
        {
            client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        }

        return client;
    }

    /// <summary>Provisions a device for a patient and returns the device's token.</summary>
    public async Task<string> ProvisionAsync(string deviceId, string patientId)
    {
        using var response = await Http.PostAsJsonAsync("/api/devices", new { deviceId, patientId });
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.Created, $"provisioning answered {response.StatusCode}: {body}");
        return System.Text.Json.JsonDocument.Parse(body).RootElement.GetProperty("token").GetString()!;
    }

    /// <summary>
    /// The patient's trend of <paramref name="kind"/> through the REST API; with <paramref name="count"/>, once it holds
    /// that many readings (an ack means committed; the grain folds the readings into windows a moment later).
    /// </summary>
    public Task<TrendResponse> TrendAsync(string patientId, string kind, DateTimeOffset from, DateTimeOffset to, string resolution = "1m", long? count = null) =>
        count is null
            ? ReadTrendAsync(patientId, kind, from, to, resolution)
            : TrendWhenAsync(patientId, kind, from, to, resolution, trend => trend.TotalCount == count);

    private async Task<TrendResponse> ReadTrendAsync(string patientId, string kind, DateTimeOffset from, DateTimeOffset to, string resolution)
    {
        var url = $"/api/patients/{patientId}/trends?kind={kind}&from={Uri.EscapeDataString(from.ToString("O"))}&to={Uri.EscapeDataString(to.ToString("O"))}&resolution={resolution}";
        var trend = await Http.GetFromJsonAsync<TrendResponse>(url);
        return trend ?? throw new InvalidOperationException("empty trend response");
    }

    /// <summary>
    /// Device batches committed, the commits (group commits) that took them, and the batches whose wait for their commit
    /// was measured, since the server started.
    /// </summary>
    public async Task<(long Batches, long Commits, long Waited)> CommitCountsAsync()
    {
        var metrics = await Http.GetStringAsync("/metrics");
        static long Sum(string metrics, string name) =>
            System.Text.RegularExpressions.Regex.Matches(metrics, $@"^{name}\{{[^}}]*\}} (\d+)", System.Text.RegularExpressions.RegexOptions.Multiline)
                .Sum(match => long.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture));
        return (Sum(metrics, "telemetry_batches_committed_total"), Sum(metrics, "telemetry_commit_duration_seconds_count"), Sum(metrics, "telemetry_commit_wait_seconds_count"));
    }

    /// <summary>The patient's raw heart rates in [<paramref name="from"/>, <paramref name="to"/>), as rows of the CSV export (header left out).</summary>
    public async Task<List<string>> RawHeartRatesAsync(string patientId, DateTimeOffset from, DateTimeOffset to, HttpClient? client = null)
    {
        var csv = await (client ?? Http).GetStringAsync(
            $"/api/patients/{patientId}/export.csv?kind=heart_rate&resolution=raw&from={Uri.EscapeDataString(from.ToString("O"))}&to={Uri.EscapeDataString(to.ToString("O"))}");
        return [.. csv.Split('\n', StringSplitOptions.RemoveEmptyEntries).Skip(1)];
    }

    /// <summary>
    /// The trend once it satisfies <paramref name="settled"/>, or as it is after 40 s. An ack means the readings are
    /// committed; the patient's grain folds them into rollups a moment later (with a series server, late windows and
    /// repairs wait for it to show what it was sent: up to 15 s).
    /// </summary>
    public async Task<TrendResponse> TrendWhenAsync(string patientId, string kind, DateTimeOffset from, DateTimeOffset to, string resolution, Func<TrendResponse, bool> settled)
    {
        var deadline = DateTime.UtcNow.AddSeconds(40);
        while (true)
        {
            var trend = await ReadTrendAsync(patientId, kind, from, to, resolution);
            if (settled(trend) || DateTime.UtcNow > deadline)
            {
                return trend;
            }

            await Task.Delay(100);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await KillAsync();
        _process?.Dispose();
        Http.Dispose();
        try
        {
            Directory.Delete(DataDirectory, recursive: true);
        }
        catch (IOException)
        {
            // Best effort: a temp folder left behind harms nothing.
        }
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_output)
        {
            _output.AppendLine(line);
        }
    }

    /// <summary>The server built beside these tests: src/Api/bin/{Configuration}/net10.0/Telemetry.Api.dll.</summary>
    public static string ServerAssembly()
    {
        var testOutput = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        var framework = testOutput.Name;
        var configuration = testOutput.Parent!.Name;
        var assembly = Path.Combine(RepositoryRoot(), "src", "Api", "bin", configuration, framework, "Telemetry.Api.dll");
        return File.Exists(assembly) ? assembly : throw new FileNotFoundException("Build src/Api first.", assembly);
    }

    /// <summary>The folder holding Telemetry.sln, above the tests' output.</summary>
    public static string RepositoryRoot()
    {
        var root = new DirectoryInfo(AppContext.BaseDirectory);
        while (root is not null && !File.Exists(Path.Combine(root.FullName, "Telemetry.sln")))
        {
            root = root.Parent;
        }

        return root?.FullName ?? throw new InvalidOperationException("Telemetry.sln not found above " + AppContext.BaseDirectory);
    }
}
