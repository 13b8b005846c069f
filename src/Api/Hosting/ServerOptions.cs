using System.ComponentModel.DataAnnotations;
using System.Net;

namespace Telemetry.Api.Hosting;

/// <summary>Where the server listens. Bound from <c>Telemetry:Server</c>; a port of 0 turns that listener off.</summary>
public sealed class ServerOptions : IValidatableObject
{
    public const string Section = "Telemetry:Server";

    /// <summary>The address every listener binds: <c>*</c> for all interfaces, or an IP address such as 127.0.0.1.</summary>
    [Required]
    public string ListenAddress { get; set; } = "*";

    /// <summary>HTTP/1.1: REST, FHIR, pages, SSE and MQTT over WebSocket.</summary>
    [Range(0, 65535)]
    public int HttpPort { get; set; } = 5080;

    /// <summary>The path of MQTT over WebSocket on the HTTP port.</summary>
    [Required]
    [RegularExpression("^/.*", ErrorMessage = "The MQTT WebSocket path must start with '/'.")]
    public string MqttWebSocketPath { get; set; } = "/mqtt";

    /// <summary>gRPC over HTTP/2 cleartext.</summary>
    [Range(0, 65535)]
    public int GrpcPort { get; set; } = 5081;

    /// <summary>MQTT over TCP.</summary>
    [Range(0, 65535)]
    public int MqttPort { get; set; } = 1883;

    /// <summary>HTTPS with HTTP/1.1 and HTTP/2: everything on the HTTP port, and gRPC over TLS. Only with a TLS certificate.</summary>
    [Range(0, 65535)]
    public int HttpsPort { get; set; } = 5443;

    /// <summary>MQTT over TLS, with optional device certificates. Only with a TLS certificate.</summary>
    [Range(0, 65535)]
    public int MqttTlsPort { get; set; } = 8883;

    /// <summary>
    /// Connections the server holds open at once, over every listener (devices' MQTT and gRPC, people's HTTP). Beyond it
    /// a new connection is closed at once, and counted in <c>telemetry_connections_rejected_total</c> (see <see cref="ConnectionLimit"/>). An idle MQTT
    /// connection costs the server a few KB; the machine's open-file limit must allow this many too.
    /// </summary>
    [Range(1, 10_000_000)]
    public int MaxConnections { get; set; } = 200_000;

    /// <summary>The co-hosted Orleans silo's port for silo-to-silo traffic.</summary>
    [Range(1, 65535)]
    public int SiloPort { get; set; } = 11111;

    /// <summary>
    /// Reverse proxies (addresses such as <c>10.0.0.5</c>, or networks such as <c>10.0.0.0/8</c>) whose
    /// <c>X-Forwarded-For</c> and <c>X-Forwarded-Proto</c> name the real client. Empty: the headers are ignored, so
    /// no client can claim another address.
    /// </summary>
    public string[] TrustedProxies { get; set; } = [];

    /// <summary>The trusted proxies as addresses and networks; false, naming it, at the first entry that is neither.</summary>
    public bool TryParseTrustedProxies(out List<IPAddress> addresses, out List<IPNetwork> networks, out string? invalid)
    {
        (addresses, networks, invalid) = ([], [], null);
        foreach (var proxy in TrustedProxies)
        {
            if (IPAddress.TryParse(proxy, out var address))
            {
                addresses.Add(address);
            }
            else if (IPNetwork.TryParse(proxy, out var network))
            {
                networks.Add(network);
            }
            else
            {
                invalid = proxy;
                return false;
            }
        }

        return true;
    }

    /// <summary>
    /// The listeners the server opens, each with its setting, port and what it serves: the MQTT ports only when
    /// <paramref name="mqtt"/> (no external broker), the TLS ones only with <paramref name="tls"/>, none whose port is 0.
    /// </summary>
    public IEnumerable<(string Setting, int Port, string What)> Listeners(bool mqtt, bool tls)
    {
        (string Setting, int Port, string What)[] listeners =
        [
            (nameof(HttpPort), HttpPort, "HTTP: the API, FHIR and the dashboards"),
            (nameof(GrpcPort), GrpcPort, "gRPC"),
            (nameof(MqttPort), mqtt ? MqttPort : 0, "MQTT"),
            (nameof(HttpsPort), tls ? HttpsPort : 0, "HTTPS"),
            (nameof(MqttTlsPort), mqtt && tls ? MqttTlsPort : 0, "MQTT over TLS"),
            (nameof(SiloPort), SiloPort, "the Orleans silo's, between the servers of a cluster"),
        ];
        return listeners.Where(listener => listener.Port != 0);
    }

    /// <summary>Two of the listeners the server opens (see <see cref="Listeners"/>) given one port, named as settings; null when each has its own.</summary>
    public string? SharedPort(bool mqtt, bool tls) =>
        Listeners(mqtt, tls).GroupBy(listener => listener.Port).FirstOrDefault(port => port.Count() > 1) is { } shared
            ? $"{string.Join(" and ", shared.Select(listener => $"{Section}:{listener.Setting}"))} share port {shared.Key}: each listener needs a port of its own (0 turns a listener off)."
            : null;

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (ListenAddress is not ("*" or "0.0.0.0" or "::" or "localhost") && !System.Net.IPAddress.TryParse(ListenAddress, out _))
        {
            yield return new ValidationResult($"ListenAddress: '{ListenAddress}' is neither *, localhost nor an IP address such as 127.0.0.1.", [nameof(ListenAddress)]);
        }

        if (!TryParseTrustedProxies(out _, out _, out var invalid))
        {
            yield return new ValidationResult($"TrustedProxies: '{invalid}' is neither an IP address nor a network such as 10.0.0.0/8.", [nameof(TrustedProxies)]);
        }
    }
}
