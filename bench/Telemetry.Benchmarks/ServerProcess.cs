using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Security.Cryptography;

namespace Telemetry.Benchmarks;

/// <summary>The real server (src/Api, built in the same configuration) on a data file, on free loopback ports.</summary>
internal sealed class ServerProcess : IAsyncDisposable
{
    private readonly Process _process;
    private bool _disposed;

    private ServerProcess(Process process, HttpClient http, string adminToken, int httpPort, int grpcPort, int mqttPort)
    {
        _process = process;
        Http = http;
        AdminToken = adminToken;
        HttpPort = httpPort;
        GrpcPort = grpcPort;
        MqttPort = mqttPort;
    }

    public HttpClient Http { get; }

    public string AdminToken { get; }

    public int HttpPort { get; }

    public int GrpcPort { get; }

    public int MqttPort { get; }

    /// <summary>The server's process, for its CPU time and memory.</summary>
    public Process Process => _process;

    /// <param name="settings">Extra configuration, as environment variables.</param>
    public static async Task<ServerProcess> StartAsync(string databasePath, IReadOnlyDictionary<string, string>? settings = null)
    {
        var token = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
        var httpPort = FreePort();
        var grpcPort = FreePort();
        var mqttPort = FreePort();
        var start = new ProcessStartInfo("dotnet", [ServerAssembly()])
        {
            WorkingDirectory = Path.GetDirectoryName(databasePath)!,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.Environment["ASPNETCORE_ENVIRONMENT"] = "Production";
        start.Environment["Logging__LogLevel__Default"] = "Warning";
        start.Environment["Telemetry__Server__ListenAddress"] = "127.0.0.1";
        start.Environment["Telemetry__Server__HttpPort"] = httpPort.ToString(CultureInfo.InvariantCulture);
        start.Environment["Telemetry__Server__GrpcPort"] = grpcPort.ToString(CultureInfo.InvariantCulture);
        start.Environment["Telemetry__Server__MqttPort"] = mqttPort.ToString(CultureInfo.InvariantCulture);
        start.Environment["Telemetry__Server__SiloPort"] = FreePort().ToString(CultureInfo.InvariantCulture);
        start.Environment["Telemetry__Storage__DuckDb__Path"] = databasePath;
        start.Environment["Telemetry__Auth__AdminToken"] = token;

        // One caller asking as fast as it can is the point here, not a client to slow down.
        start.Environment["Telemetry__Auth__RateLimits__RequestsPerSecond"] = "1000000";
        start.Environment["Telemetry__Auth__RateLimits__Burst"] = "1000000";
        foreach (var (key, value) in settings ?? new Dictionary<string, string>())
        {
            start.Environment[key] = value;
        }

        var process = Process.Start(start) ?? throw new InvalidOperationException("dotnet did not start");
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, e) => Console.Error.WriteLine(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{httpPort}") };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        var server = new ServerProcess(process, http, token, httpPort, grpcPort, mqttPort);
        for (var deadline = DateTime.UtcNow.AddMinutes(2); DateTime.UtcNow < deadline && !process.HasExited; await Task.Delay(250))
        {
            try
            {
                using var health = await http.GetAsync("/healthz");
                if (health.IsSuccessStatusCode)
                {
                    return server;
                }
            }
            catch (HttpRequestException)
            {
                // Not listening yet.
            }
        }

        await server.DisposeAsync();
        throw new InvalidOperationException("The server did not become healthy.");
    }

    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
        Http.Dispose();
    }

    private static string ServerAssembly()
    {
        // bench/Telemetry.Benchmarks/bin/<Configuration>/<framework>/ -> src/Api/bin/<Configuration>/<framework>/
        var output = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        var root = output.Parent!.Parent!.Parent!.Parent!.Parent!.FullName;
        var assembly = Path.Combine(root, "src", "Api", "bin", output.Parent.Name, output.Name, "Telemetry.Api.dll");
        return File.Exists(assembly) ? assembly : throw new FileNotFoundException("Build src/Api in the same configuration first.", assembly);
    }

    public static int FreePort()
    {
        using var listener = new TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }
}
