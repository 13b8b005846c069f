using System.Globalization;
using Google.Protobuf;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Telemetry.Protos;

namespace Telemetry.EndToEnd.Tests;

/// <summary>What a device does: connect over MQTT, publish payloads in each format.</summary>
public static class Devices
{
    public static async Task<IMqttClient> ConnectMqttAsync(TelemetryServer server, string deviceId, string token, MqttProtocolVersion version = MqttProtocolVersion.V500) =>
        await ConnectMqttAsync(MqttOptions(server.MqttPort, deviceId, deviceId, token, version).WithCleanSession().Build());

    /// <summary>A connected client, once the CONNACK says success.</summary>
    public static async Task<IMqttClient> ConnectMqttAsync(MqttClientOptions options)
    {
        var client = new MqttClientFactory().CreateMqttClient();
        var result = await client.ConnectAsync(options);
        Assert.Equal(MqttClientConnectResultCode.Success, result.ResultCode);
        return client;
    }

    /// <summary>How a device connects over MQTT TCP on loopback: its client id, and a username and password when given.</summary>
    public static MqttClientOptionsBuilder MqttOptions(int port, string clientId, string? user, string? password, MqttProtocolVersion version = MqttProtocolVersion.V500)
    {
        var options = new MqttClientOptionsBuilder()
            .WithTcpServer("127.0.0.1", port)
            .WithClientId(clientId)
            .WithProtocolVersion(version)
            .WithTimeout(TimeSpan.FromSeconds(10));
        return user is null ? options : options.WithCredentials(user, password ?? string.Empty);
    }

    /// <summary>True when something accepts TCP connections on the loopback <paramref name="port"/>.</summary>
    public static async Task<bool> IsListeningAsync(int port)
    {
        using var client = new System.Net.Sockets.TcpClient();
        try
        {
            await client.ConnectAsync(System.Net.IPAddress.Loopback, port);
            return true;
        }
        catch (System.Net.Sockets.SocketException)
        {
            return false;
        }
    }

    /// <summary>Connects, returns what the CONNACK says, and disconnects again.</summary>
    public static async Task<MqttClientConnectResultCode> TryConnectMqttAsync(MqttClientOptions options)
    {
        using var client = new MqttClientFactory().CreateMqttClient();
        var result = (await client.ConnectAsync(options)).ResultCode;
        if (client.IsConnected)
        {
            await client.DisconnectAsync();
        }

        return result;
    }

    public static Task<MqttClientPublishResult> PublishAsync(IMqttClient client, string topic, byte[] payload) =>
        client.PublishAsync(new MqttApplicationMessageBuilder()
            .WithTopic(topic)
            .WithPayload(payload)
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
            .Build());

    /// <summary>The project's JSON batch of heart rates, one per second from <paramref name="start"/>.</summary>
    public static byte[] JsonHeartRates(ulong seq, DateTimeOffset start, params double[] values)
    {
        var readings = values.Select((value, i) =>
            $$"""{"kind":"heart_rate","time":"{{start.AddSeconds(i).ToString("O", CultureInfo.InvariantCulture)}}","value":{{value.ToString(CultureInfo.InvariantCulture)}}}""");
        return System.Text.Encoding.UTF8.GetBytes($$"""{"seq":{{seq}},"readings":[{{string.Join(",", readings)}}]}""");
    }

    /// <summary>A protobuf batch of one vital, one reading per second from <paramref name="start"/>.</summary>
    public static VitalBatch ProtobufBatch(ulong seq, DateTimeOffset start, string kind, string unit, params double[] values)
    {
        var series = new VitalSeries { Kind = kind, Unit = unit };
        for (var i = 0; i < values.Length; i++)
        {
            series.TimeDeltasMs.Add(i == 0 ? 0 : 1_000);
            series.Values.Add(values[i]);
        }

        return new VitalBatch { Seq = seq, BaseTimeMs = start.ToUnixTimeMilliseconds(), Series = { series } };
    }

    public static byte[] ToBytes(this VitalBatch batch) => batch.ToByteArray();

    /// <summary>A time on a whole minute a few minutes ago, so a test's readings share predictable windows.</summary>
    public static DateTimeOffset RecentMinute(int minutesAgo = 5)
    {
        var now = DateTimeOffset.UtcNow;
        return new DateTimeOffset(now.Year, now.Month, now.Day, now.Hour, now.Minute, 0, TimeSpan.Zero).AddMinutes(-minutesAgo);
    }
}
