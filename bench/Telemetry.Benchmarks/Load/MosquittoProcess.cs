using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using MQTTnet;
using MQTTnet.Protocol;

namespace Telemetry.Benchmarks.Load;

/// <summary>
/// Debian's Mosquitto on a free loopback port, open to any client, with one subscriber to every device's readings
/// (QoS 1) counting what it is delivered: the broker the load benchmark compares with.
/// </summary>
internal sealed class MosquittoProcess : IAsyncDisposable
{
    private const string Binary = "/usr/sbin/mosquitto";

    private readonly string _folder;
    private readonly IMqttClient _subscriber;
    private long _received;

    private MosquittoProcess(string folder, Process process, int port, IMqttClient subscriber)
    {
        _folder = folder;
        Process = process;
        Port = port;
        _subscriber = subscriber;
    }

    public Process Process { get; }

    public int Port { get; }

    /// <summary>Messages delivered to the subscriber so far.</summary>
    public long Received => Interlocked.Read(ref _received);

    public static async Task<MosquittoProcess> StartAsync()
    {
        if (!File.Exists(Binary))
        {
            throw new InvalidOperationException($"{Binary} is missing: apt-get install mosquitto");
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

        var subscriber = new MqttClientFactory().CreateMqttClient();
        var broker = new MosquittoProcess(folder, process, port, subscriber);
        subscriber.ApplicationMessageReceivedAsync += _ =>
        {
            Interlocked.Increment(ref broker._received);
            return Task.CompletedTask;
        };
        await subscriber.ConnectAsync(new MqttClientOptionsBuilder().WithTcpServer("127.0.0.1", port).WithClientId("load-subscriber")
            .WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V500).WithReceiveMaximum(65_535).Build());
        await subscriber.SubscribeAsync("devices/+/vitals", MqttQualityOfServiceLevel.AtLeastOnce);
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
