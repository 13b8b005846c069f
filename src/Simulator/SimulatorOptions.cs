using System.Globalization;

namespace Telemetry.Simulator;

/// <summary>The simulator's command line.</summary>
public sealed record SimulatorOptions
{
    public string Url { get; init; } = "http://localhost:5080";

    public string MqttHost { get; init; } = "localhost";

    public int MqttPort { get; init; } = 1883;

    public string GrpcUrl { get; init; } = "http://localhost:5081";

    public string? AdminToken { get; init; }

    public string Protocol { get; init; } = "mqtt";

    public int Devices { get; init; } = 10;

    /// <summary>Readings per second from each device.</summary>
    public double Rate { get; init; } = 5;

    /// <summary>Readings per message.</summary>
    public int Batch { get; init; } = 10;

    public TimeSpan Duration { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Seconds between alert probes per device (MQTT only); zero for none.</summary>
    public double AlertProbeSeconds { get; init; }

    /// <summary>MQTT publishes each device has waiting for their PUBACKs at once.</summary>
    public int Window { get; init; } = 1;

    /// <summary>The MQTT client: <see cref="FullClient"/> (MQTTnet) or <see cref="LeanClient"/> (<see cref="MqttLoadConnection"/>).</summary>
    public string MqttClient { get; init; } = FullClient;

    /// <summary>The gRPC client: <see cref="FullClient"/> (Grpc.Net.Client) or <see cref="LeanClient"/> (<see cref="GrpcLoadConnection"/>).</summary>
    public string GrpcClient { get; init; } = FullClient;

    public const string FullClient = "full";

    public const string LeanClient = "lean";

    /// <summary>The most publishes a device has waiting at once: well within MQTT's 65,535 packet ids.</summary>
    public const int MaxWindow = 10_000;

    /// <summary>After the run, compare each device's ledger of acknowledged readings with what the server stored.</summary>
    public bool Verify { get; init; }

    public string Prefix { get; init; } = "sim-" + Convert.ToHexStringLower(BitConverter.GetBytes(Random.Shared.Next()))[..6];

    public const string Usage = """
        Streams vital signs from a fleet of virtual wearables to a running Telemetry server.

        usage: dotnet run --project src/Simulator -- [options]
          --devices N          virtual wearables, each bound to patient p-0001, p-0002, ... (default 10)
          --protocol mqtt|grpc how they send (default mqtt)
          --rate R             readings per second per device (default 5)
          --batch B            readings per message (default 10)
          --duration S         seconds to run (default 60)
          --url U              REST API (default http://localhost:5080)
          --mqtt HOST:PORT     MQTT broker (default localhost:1883)
          --grpc U             gRPC endpoint (default http://localhost:5081)
          --admin-token T      admin token (default: $TELEMETRY_ADMIN_TOKEN, else ./data/admin-token)
          --prefix P           device id prefix (default sim-<random>)
          --alert-probes S     every S seconds (the first at a random point of the first S) each device sends a
                               heart rate over a probe rule's level and times the alert's arrival on its
                               patient's MQTT alerts topic (MQTT only)
          --window W           MQTT publishes a device has waiting for their acks at once (default 1)
          --mqtt-client full|lean
                               full (default): MQTTnet, reconnecting and resending what had no answer;
                               lean: a minimal client for load, all devices paced from one thread, costing
                               the machine far less CPU per message; no reconnects, no --verify
          --grpc-client full|lean
                               full (default): Grpc.Net.Client; lean: a minimal HTTP/2 client for load, one
                               call per device, all paced from one thread; no reconnects, no --verify
          --verify             after the run, compare each device's ledger of acknowledged readings with the
                               readings the server stored for it (exit code 1 when any is missing or extra)

        Over MQTT a device whose connection drops (a server restart, a network fault) connects again and resends
        the batch it had no answer for; the ledger counts each acknowledged batch once.
        """;

    public static SimulatorOptions Parse(string[] args)
    {
        var options = new SimulatorOptions();
        for (var i = 0; i < args.Length; i++)
        {
            if (args[i] == "--verify")
            {
                options = options with { Verify = true };
                continue;
            }

            var value = i + 1 < args.Length ? args[i + 1] : throw new ArgumentException($"{args[i]} needs a value");
            options = args[i] switch
            {
                "--devices" => options with { Devices = int.Parse(value, CultureInfo.InvariantCulture) },
                "--protocol" => options with { Protocol = value is "mqtt" or "grpc" ? value : throw new ArgumentException("--protocol is mqtt or grpc") },
                "--rate" => options with { Rate = double.Parse(value, CultureInfo.InvariantCulture) },
                "--batch" => options with { Batch = int.Parse(value, CultureInfo.InvariantCulture) },
                "--duration" => options with { Duration = TimeSpan.FromSeconds(double.Parse(value, CultureInfo.InvariantCulture)) },
                "--url" => options with { Url = value },
                "--mqtt" => options with { MqttHost = value.Split(':')[0], MqttPort = value.Contains(':') ? int.Parse(value.Split(':')[1], CultureInfo.InvariantCulture) : 1883 },
                "--grpc" => options with { GrpcUrl = value },
                "--admin-token" => options with { AdminToken = value },
                "--prefix" => options with { Prefix = value },
                "--window" => options with { Window = int.Parse(value, CultureInfo.InvariantCulture) },
                "--mqtt-client" => options with { MqttClient = value is FullClient or LeanClient ? value : throw new ArgumentException("--mqtt-client is full or lean") },
                "--grpc-client" => options with { GrpcClient = value is FullClient or LeanClient ? value : throw new ArgumentException("--grpc-client is full or lean") },
                "--alert-probes" => options with { AlertProbeSeconds = double.Parse(value, CultureInfo.InvariantCulture) },
                _ => throw new ArgumentException($"unknown option {args[i]}"),
            };
            i++;
        }

        if (options.Devices < 1 || options.Rate <= 0 || options.Batch < 1 || options.Window is < 1 or > MaxWindow)
        {
            throw new ArgumentException($"--devices, --rate and --batch must be positive, and --window from 1 to {MaxWindow}");
        }

        if (options.AlertProbeSeconds < 0 || (options.AlertProbeSeconds > 0 && options.Protocol != "mqtt"))
        {
            throw new ArgumentException("--alert-probes is a number of seconds, and works over mqtt only");
        }

        if (options.MqttClient == LeanClient && (options.Verify || options.Protocol != "mqtt"))
        {
            throw new ArgumentException("--mqtt-client lean is for load over mqtt: it keeps no ledger, so it cannot --verify");
        }

        if (options.GrpcClient == LeanClient && (options.Verify || options.Protocol != "grpc"))
        {
            throw new ArgumentException("--grpc-client lean is for load over grpc: it keeps no ledger, so it cannot --verify");
        }

        return options;
    }

    /// <summary>The admin token from the option, the environment, or the server's data folder.</summary>
    public string ResolveAdminToken()
    {
        if (!string.IsNullOrWhiteSpace(AdminToken))
        {
            return AdminToken;
        }

        if (Environment.GetEnvironmentVariable("TELEMETRY_ADMIN_TOKEN") is { Length: > 0 } fromEnvironment)
        {
            return fromEnvironment;
        }

        var file = Path.Combine("data", "admin-token");
        return File.Exists(file)
            ? File.ReadAllText(file).Trim()
            : throw new ArgumentException("no admin token: pass --admin-token, set TELEMETRY_ADMIN_TOKEN, or run from the folder the server runs in");
    }
}
