using System.Collections.Concurrent;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using MQTTnet;
using Telemetry.Testing;

namespace Telemetry.EndToEnd.Tests;

/// <summary>An alert event as a listener received it: its type and alert, and the raw JSON.</summary>
public sealed record ReceivedAlert(string Type, string AlertId, string Status, int EscalationLevel, JsonElement Json)
{
    public static ReceivedAlert Parse(string json)
    {
        var root = JsonDocument.Parse(json).RootElement.Clone();
        var alert = root.GetProperty("alert");
        return new ReceivedAlert(root.GetProperty("type").GetString()!, alert.GetProperty("alertId").GetString()!,
            alert.GetProperty("status").GetString()!, alert.GetProperty("escalationLevel").GetInt32(), root);
    }
}

/// <summary>A real HTTP server on loopback that takes webhook deliveries and checks each one's signature.</summary>
public sealed class WebhookReceiver : IDisposable
{
    private readonly HttpListener _listener = new();
    private readonly string _secret;

    public WebhookReceiver(string secret)
    {
        _secret = secret;
        Port = TestPorts.Free();
        Url = $"http://127.0.0.1:{Port}/hooks/alerts/";
        _listener.Prefixes.Add(Url);
        _listener.Start();
        _ = Task.Run(ReceiveAsync);
    }

    public int Port { get; }

    public string Url { get; }

    public ConcurrentQueue<ReceivedAlert> Received { get; } = new();

    public ConcurrentQueue<string> BadSignatures { get; } = new();

    /// <summary>How many deliveries to answer with <see cref="FailWith"/> before accepting: the dispatcher must retry.</summary>
    public int FailFirst { get; set; }

    /// <summary>The status the first <see cref="FailFirst"/> deliveries are answered with (503: the receiver is down).</summary>
    public int FailWith { get; set; } = 503;

    /// <summary>Events this receiver cannot handle: answered 500 every time (a payload that trips the receiver up).</summary>
    public Func<ReceivedAlert, bool>? FailsOn { get; set; }

    public int Attempts => _attempts;

    private int _attempts;

    public void Dispose() => _listener.Close();

    private async Task ReceiveAsync()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try
            {
                context = await _listener.GetContextAsync();
            }
            catch (Exception) when (!_listener.IsListening)
            {
                return;
            }
            catch (HttpListenerException)
            {
                return;
            }

            using var buffer = new MemoryStream();
            await context.Request.InputStream.CopyToAsync(buffer);
            var body = buffer.ToArray();
            var attempt = Interlocked.Increment(ref _attempts);
            if (attempt <= FailFirst)
            {
                context.Response.StatusCode = FailWith;
                context.Response.Close();
                continue;
            }

            var timestamp = context.Request.Headers["X-Telemetry-Timestamp"] ?? string.Empty;
            var signature = context.Request.Headers["X-Telemetry-Signature"] ?? string.Empty;
            var expected = "sha256=" + Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(_secret), (byte[])[.. Encoding.UTF8.GetBytes(timestamp + "."), .. body]));
            if (!CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(expected), Encoding.ASCII.GetBytes(signature)))
            {
                BadSignatures.Enqueue(signature);
                context.Response.StatusCode = 401;
                context.Response.Close();
                continue;
            }

            var received = ReceivedAlert.Parse(Encoding.UTF8.GetString(body));
            if (FailsOn?.Invoke(received) == true)
            {
                context.Response.StatusCode = 500;
                context.Response.Close();
                continue;
            }

            Received.Enqueue(received);
            context.Response.StatusCode = 204;
            context.Response.Close();
        }
    }
}

/// <summary>A server-sent events client of an alert stream, reading in the background.</summary>
public sealed class AlertStreamClient : IAsyncDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _reading;

    private AlertStreamClient(HttpResponseMessage response)
    {
        Response = response;
        _reading = Task.Run(() => ReadAsync(response));
    }

    public HttpResponseMessage Response { get; }

    public ConcurrentQueue<(long Id, ReceivedAlert Alert)> Received { get; } = new();

    /// <summary>The events other than alerts the stream sent (<c>expired</c>, <c>revoked</c>: it ends with one).</summary>
    public ConcurrentQueue<string> Others { get; } = new();

    /// <summary>Opens the stream as the admin, or as the caller <paramref name="client"/> stands for.</summary>
    public static async Task<AlertStreamClient> OpenAsync(TelemetryServer server, string path, long? lastEventId = null, HttpClient? client = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        if (lastEventId is { } id)
        {
            request.Headers.Add("Last-Event-ID", id.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }

        var response = await (client ?? server.Http).SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        return new AlertStreamClient(response);
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        Response.Dispose();
        await _reading.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _stop.Dispose();
    }

    private async Task ReadAsync(HttpResponseMessage response)
    {
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(_stop.Token));
        long id = 0;
        string? data = null;
        var name = "alert";
        while (await reader.ReadLineAsync(_stop.Token) is { } line)
        {
            if (line.StartsWith("id: ", StringComparison.Ordinal))
            {
                id = long.Parse(line[4..], System.Globalization.CultureInfo.InvariantCulture);
            }
            else if (line.StartsWith("event: ", StringComparison.Ordinal))
            {
                name = line[7..];
            }
            else if (line.StartsWith("data: ", StringComparison.Ordinal))
            {
                data = line[6..];
            }
            else if (line.Length == 0 && data is not null)
            {
                if (name == "alert")
                {
                    Received.Enqueue((id, ReceivedAlert.Parse(data)));
                }
                else
                {
                    Others.Enqueue(name);
                }

                (data, name) = (null, "alert");
            }
        }
    }
}

/// <summary>Waiting for what arrives asynchronously.</summary>
public static class Eventually
{
    public static async Task<T> FirstAsync<T>(IEnumerable<T> source, Func<T, bool> match, int seconds = 15)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (DateTime.UtcNow < deadline)
        {
            foreach (var item in source)
            {
                if (match(item))
                {
                    return item;
                }
            }

            await Task.Delay(50);
        }

        throw new TimeoutException($"Nothing matching arrived within {seconds} s; received: {string.Join(" | ", source)}");
    }

    /// <summary>The first value <paramref name="settled"/> accepts, or the last one read when <paramref name="within"/> (20 s) has passed.</summary>
    public static async Task<T> ReadAsync<T>(Func<Task<T>> read, Func<T, bool> settled, TimeSpan? within = null)
    {
        var deadline = DateTime.UtcNow + (within ?? TimeSpan.FromSeconds(20));
        while (true)
        {
            var value = await read();
            if (settled(value) || DateTime.UtcNow > deadline)
            {
                return value;
            }

            await Task.Delay(200);
        }
    }

    /// <summary>Subscribes an MQTT client to a topic and collects what it receives.</summary>
    public static async Task<ConcurrentQueue<ReceivedAlert>> SubscribeAsync(IMqttClient client, string topic)
    {
        var received = new ConcurrentQueue<ReceivedAlert>();
        client.ApplicationMessageReceivedAsync += args =>
        {
            received.Enqueue(ReceivedAlert.Parse(Encoding.UTF8.GetString(args.ApplicationMessage.Payload)));
            return Task.CompletedTask;
        };
        var result = await client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder()
            .WithTopicFilter(topic, MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce).Build());
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, result.Items.Single().ResultCode);
        return received;
    }
}
