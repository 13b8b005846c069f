using System.Collections.Concurrent;
using System.IO.Compression;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace Telemetry.Storage.Tests.Influx;

/// <summary>
/// A loopback HTTP server answering as InfluxDB 2 would, from a script: each request is recorded (path, query, headers,
/// body unzipped) and answered with the next scripted response, or 204 once the script runs out.
/// </summary>
internal sealed class RecordingInfluxServer : IDisposable
{
    private readonly HttpListener _listener = new();
    private readonly ConcurrentQueue<Answer> _script = new();
    private readonly Task _loop;

    public RecordingInfluxServer()
    {
        var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        var port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        Url = $"http://127.0.0.1:{port}";
        _listener.Prefixes.Add(Url + "/");
        _listener.Start();
        _loop = Task.Run(ServeAsync);
    }

    public string Url { get; }

    public ConcurrentQueue<Request> Requests { get; } = new();

    /// <summary>While set, every request is answered with this status, whatever the script holds.</summary>
    public int? FailingWith { get; set; }

    /// <summary>Answers the next request with <paramref name="status"/>, <paramref name="body"/> and <paramref name="headers"/>.</summary>
    public void Then(int status, string body = "", string contentType = "application/json", params (string Name, string Value)[] headers) =>
        _script.Enqueue(new Answer(status, body, contentType, headers));

    /// <summary>Answers the next query with annotated CSV, as InfluxDB answers Flux.</summary>
    public void ThenCsv(string csv) => Then(200, csv.ReplaceLineEndings("\r\n"), "text/csv; charset=utf-8");

    /// <summary>The Flux text of a recorded query request.</summary>
    public static string Flux(Request request)
    {
        using var json = JsonDocument.Parse(request.Body);
        return json.RootElement.GetProperty("query").GetString()!;
    }

    private async Task ServeAsync()
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

            var request = context.Request;
            Stream body = request.InputStream;
            if (string.Equals(request.Headers["Content-Encoding"], "gzip", StringComparison.OrdinalIgnoreCase))
            {
                body = new GZipStream(body, CompressionMode.Decompress);
            }

            using (var reader = new StreamReader(body, Encoding.UTF8))
            {
                Requests.Enqueue(new Request(
                    request.HttpMethod,
                    request.Url!.AbsolutePath,
                    request.Url.Query,
                    request.Headers.AllKeys.Where(key => key is not null).ToDictionary(key => key!, key => request.Headers[key]!, StringComparer.OrdinalIgnoreCase),
                    await reader.ReadToEndAsync()));
            }

            var answer = FailingWith is { } failing ? new Answer(failing, "", "text/plain", [])
                : _script.TryDequeue(out var next) ? next : new Answer(204, "", "text/plain", []);
            context.Response.StatusCode = answer.Status;
            foreach (var (name, value) in answer.Headers)
            {
                context.Response.Headers[name] = value;
            }

            if (answer.Body.Length > 0)
            {
                context.Response.ContentType = answer.ContentType;
                var bytes = Encoding.UTF8.GetBytes(answer.Body);
                await context.Response.OutputStream.WriteAsync(bytes);
            }

            context.Response.Close();
        }
    }

    public void Dispose()
    {
        _listener.Stop();
        _listener.Close();
        _loop.Wait(TimeSpan.FromSeconds(5));
    }

    public sealed record Request(string Method, string Path, string Query, IReadOnlyDictionary<string, string> Headers, string Body);

    private sealed record Answer(int Status, string Body, string ContentType, (string Name, string Value)[] Headers);
}
