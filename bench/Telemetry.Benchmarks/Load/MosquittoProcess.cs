extern alias simulator;

using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using simulator::Telemetry.Simulator;

namespace Telemetry.Benchmarks.Load;

/// <summary>
/// Debian's Mosquitto on a free loopback port, open to any client, with one subscriber to every device's readings
/// (QoS 1) counting what it is delivered: the broker the load benchmark compares with.
/// </summary>
internal sealed class MosquittoProcess : IAsyncDisposable
{
    private const string Binary = "/usr/sbin/mosquitto";

    private readonly string _folder;
    private readonly MqttLoadConnection _subscriber;
    private long _received;

    private MosquittoProcess(string folder, Process process, int port, MqttLoadConnection subscriber)
    {
        _folder = folder;
        Process = process;
        Port = port;
        _subscriber = subscriber;
    }

    public Process Process { get; }

    public int Port { get; }

    /// <summary>Messages delivered to the subscriber so far; throws once the subscriber's connection has ended, as every step after would fail unexplained.</summary>
    public long Received => _subscriber.Completion.IsCompleted
        ? throw new InvalidOperationException("Mosquitto's subscriber lost its connection", _subscriber.Completion.Exception?.InnerException)
        : Interlocked.Read(ref _received);

    /// <summary>What to install when Debian's Mosquitto is not on this machine; null when it is.</summary>
    public static string? Missing() => File.Exists(Binary) ? null : $"{Binary} is missing: apt-get install mosquitto";

    public static async Task<MosquittoProcess> StartAsync()
    {
        if (Missing() is { } missing)
        {
            throw new InvalidOperationException(missing);
        }

        var port = ServerProcess.FreePort();
        var folder = Directory.CreateTempSubdirectory("telemetry-load-mosquitto-").FullName;
        var configuration = Path.Combine(folder, "mosquitto.conf");
        await File.WriteAllTextAsync(configuration, $"""
            listener {port} 127.0.0.1
            allow_anonymous true
            persistence false
            max_queued_messages 1000000
            max_inflight_messages 0
            log_dest none

            """);
        var process = Process.Start(new ProcessStartInfo(Binary, ["-c", configuration]) { RedirectStandardOutput = true, RedirectStandardError = true })
            ?? throw new InvalidOperationException("mosquitto did not start");
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, e) => Console.Error.WriteLine(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        for (var i = 0; i < 200; i++)
        {
            try
            {
                using var probe = new TcpClient();
                await probe.ConnectAsync(IPAddress.Loopback, port);
                break;
            }
            catch (SocketException)
            {
                await Task.Delay(25);
            }
        }

        // The same minimal client the devices publish with, so the subscriber costs the generator little per message;
        // it answers each QoS 1 delivery with a PUBACK, as a subscriber must.
        var subscriber = await MqttLoadConnection.ConnectAsync("127.0.0.1", port, "load-subscriber", null, null, maxInFlight: 1, CancellationToken.None);
        var broker = new MosquittoProcess(folder, process, port, subscriber);
        subscriber.MessageReceived = (_, _) => Interlocked.Increment(ref broker._received);
        await subscriber.SubscribeAsync("devices/+/vitals", CancellationToken.None);
        return broker;
    }

    public async ValueTask DisposeAsync()
    {
        _subscriber.Dispose();
        if (!Process.HasExited)
        {
            Process.Kill();
            await Process.WaitForExitAsync();
        }

        Process.Dispose();
        Directory.Delete(_folder, recursive: true);
    }
}
