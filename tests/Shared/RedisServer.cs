using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Telemetry.Testing;

/// <summary>
/// A real Redis server (Debian's <c>redis-server</c>) on a loopback port. By default it keeps nothing on disk; a
/// persistent one keeps an append-only file in a folder of its own, and can be stopped and started again on it.
/// </summary>
internal sealed class RedisServer : IAsyncDisposable
{
    private const string Binary = "/usr/bin/redis-server";

    private readonly string? _folder;
    private Process _process;

    private RedisServer(int port, Process process, string? folder)
    {
        Port = port;
        _process = process;
        _folder = folder;
    }

    public int Port { get; }

    /// <summary>The StackExchange.Redis connection string.</summary>
    public string ConnectionString => $"127.0.0.1:{Port}";

    public static async Task<RedisServer> StartAsync(bool persistent = false)
    {
        if (!File.Exists(Binary))
        {
            throw new InvalidOperationException($"{Binary} is missing: install Debian's redis-server package (.ci/run does)");
        }

        var port = TestPorts.Free();
        var folder = persistent ? Directory.CreateTempSubdirectory("telemetry-redis-").FullName : null;
        return new RedisServer(port, await LaunchAsync(port, folder), folder);
    }

    /// <summary>Stops the server as an operator does (SIGTERM: it writes what it holds and exits).</summary>
    public async Task StopAsync()
    {
        if (!_process.HasExited)
        {
            _ = Kill(_process.Id, 15);
            await _process.WaitForExitAsync();
        }
    }

    /// <summary>Starts it again on the same port (and, when persistent, the same data).</summary>
    public async Task RestartAsync()
    {
        await StopAsync();
        _process.Dispose();
        _process = await LaunchAsync(Port, _folder);
    }

    private static async Task<Process> LaunchAsync(int port, string? folder)
    {
        var start = new ProcessStartInfo(Binary) { RedirectStandardOutput = true, RedirectStandardError = true };
        string[] storage = folder is null ? ["--save", "", "--appendonly", "no"] : ["--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", folder];
        foreach (var argument in new[] { "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--bind", "127.0.0.1" }.Concat(storage))
        {
            start.ArgumentList.Add(argument);
        }

        var process = Process.Start(start)!;
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        for (var i = 0; i < 200; i++)
        {
            try
            {
                using var client = new TcpClient();
                await client.ConnectAsync(IPAddress.Loopback, port);
                return process;
            }
            catch (SocketException)
            {
                await Task.Delay(25);
            }
        }

        process.Kill();
        throw new InvalidOperationException("redis-server did not start");
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
        if (_folder is not null)
        {
            Directory.Delete(_folder, recursive: true);
        }
    }
}
