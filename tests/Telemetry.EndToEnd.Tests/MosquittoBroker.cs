using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Telemetry.Testing;

namespace Telemetry.EndToEnd.Tests;

/// <summary>
/// Debian's Mosquitto as the external broker, configured as the README shows: a password file, and an ACL that lets
/// each device write only its own readings topic and the ingest servers read every device's.
/// </summary>
internal sealed class MosquittoBroker : IAsyncDisposable
{
    public const string IngestUser = "telemetry";

    private readonly string _folder = Path.Combine(Path.GetTempPath(), "telemetry-mosquitto-" + Guid.NewGuid().ToString("N"));
    private readonly StringBuilder _output = new();
    private Process? _process;

    private MosquittoBroker(int port) => Port = port;

    public int Port { get; }

    public string IngestPassword { get; } = Guid.NewGuid().ToString("N");

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

    /// <summary>Starts a broker that knows the ingest servers' account and <paramref name="devices"/> (id and password).</summary>
    public static async Task<MosquittoBroker> StartAsync(IReadOnlyDictionary<string, string> devices)
    {
        var broker = new MosquittoBroker(TestPorts.Free());
        Directory.CreateDirectory(broker._folder);

        var passwords = Path.Combine(broker._folder, "passwords");
        await File.WriteAllLinesAsync(passwords, [$"{IngestUser}:{broker.IngestPassword}", .. devices.Select(device => $"{device.Key}:{device.Value}")]);
        await RunAsync("/usr/bin/mosquitto_passwd", "-U", passwords);

        var acl = Path.Combine(broker._folder, "acl");
        await File.WriteAllTextAsync(acl, $"""
            # The ingest servers read every device's readings (through their shared subscription) and publish alerts.
            user {IngestUser}
            topic read devices/+/vitals
            topic write patients/+/alerts

            # Every other account is a device: it writes its own readings topic and nothing else.
            pattern write devices/%u/vitals

            """);

        var configuration = Path.Combine(broker._folder, "mosquitto.conf");
        await File.WriteAllTextAsync(configuration, $"""
            listener {broker.Port} 127.0.0.1
            allow_anonymous false
            password_file {passwords}
            acl_file {acl}
            persistence false
            max_queued_messages 100000
            max_packet_size 266240
            # (MaxMessageBytes, 256 KiB, and the 4 KiB the server allows a packet beyond it, as the README's sample)
            log_dest stdout
            log_type error
            log_type warning
            log_type notice

            """);

        broker._process = Process.Start(new ProcessStartInfo("/usr/sbin/mosquitto", ["-c", configuration])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        }) ?? throw new InvalidOperationException("mosquitto did not start");
        broker._process.OutputDataReceived += (_, e) => broker.Append(e.Data);
        broker._process.ErrorDataReceived += (_, e) => broker.Append(e.Data);
        broker._process.BeginOutputReadLine();
        broker._process.BeginErrorReadLine();
        for (var i = 0; i < 200; i++)
        {
            try
            {
                using var client = new TcpClient();
                await client.ConnectAsync(IPAddress.Loopback, broker.Port);
                return broker;
            }
            catch (SocketException)
            {
                await Task.Delay(25);
            }
        }

        throw new InvalidOperationException("mosquitto did not start: " + broker.Output);
    }

    public async ValueTask DisposeAsync()
    {
        if (_process is { HasExited: false } process)
        {
            process.Kill();
            await process.WaitForExitAsync();
        }

        _process?.Dispose();
        Directory.Delete(_folder, recursive: true);
    }

    private static async Task RunAsync(string file, params string[] arguments)
    {
        using var process = Process.Start(new ProcessStartInfo(file, arguments) { RedirectStandardError = true, RedirectStandardOutput = true })!;
        await process.WaitForExitAsync();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{file} failed: {await process.StandardError.ReadToEndAsync()}");
        }
    }

    private void Append(string? line)
    {
        if (line is not null)
        {
            lock (_output)
            {
                _output.AppendLine(line);
            }
        }
    }
}
