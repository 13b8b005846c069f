using System.Collections.Concurrent;
using System.IO.Compression;
using System.Net;
using System.Text;
using System.Text.Json;
using Telemetry.Testing;

namespace Telemetry.Storage.Tests.Influx;

/// <summary>
/// A loopback HTTP server answering as InfluxDB 2 would, from scripts: each request is recorded (path, query, headers,
/// body unzipped) and answered with the next scripted response for its kind (writes, queries), or once a script runs
/// out, 204 for a write and no rows for a query.
/// </summary>
internal sealed class RecordingInfluxServer : IDisposable
{
    private readonly HttpListener _listener = new();
    private readonly ConcurrentQueue<Answer> _writes = new();
    private readonly ConcurrentQueue<Answer> _queries = new();
    private readonly Task _loop;

    public RecordingInfluxServer()
    {
        Url = $"http://127.0.0.1:{TestPorts.Free()}";
        _listener.Prefixes.Add(Url + "/");
        _listener.Start();
        _loop = Task.Run(ServeAsync);
    }

    public string Url { get; }

    public ConcurrentQueue<Request> Requests { get; } = new();

    /// <summary>Runs when a write has arrived, before it is answered (the writer waiting in its write).</summary>
    public Action? WhileWriting { get; set; }

    /// <summary>While set, every write is answered with this status, whatever the script holds.</summary>
    public int? FailingWith { get; set; }

    /// <summary>Answers the next write with <paramref name="status"/>, <paramref name="body"/> and <paramref name="headers"/>.</summary>
    public void Then(int status, string body = "", string contentType = "application/json", params (string Name, string Value)[] headers) =>
        _writes.Enqueue(new Answer(status, body, contentType, headers));

    /// <summary>Answers the next query with annotated CSV, as InfluxDB answers Flux.</summary>
    public void ThenCsv(string csv) => _queries.Enqueue(new Answer(200, csv.ReplaceLineEndings("\r\n"), "text/csv; charset=utf-8", []));

    /// <summary>The queries asked, other than the store's lookups of readings sent before.</summary>
    public IEnumerable<Request> Reads => Requests.Where(request => request.Path == "/api/v2/query" && !Flux(request).Contains("keep(columns:", StringComparison.Ordinal));

    /// <summary>The writes made.</summary>
    public IEnumerable<Request> Writes => Requests.Where(request => request.Path == "/api/v2/write");

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

            var isQuery = request.Url.AbsolutePath == "/api/v2/query";
            if (!isQuery)
            {
                WhileWriting?.Invoke();
            }

            var answer = isQuery
                ? _queries.TryDequeue(out var query) ? query : new Answer(200, "\r\n", "text/csv; charset=utf-8", [])
                : FailingWith is { } failing ? new Answer(failing, "", "text/plain", [])
                : _writes.TryDequeue(out var write) ? write : new Answer(204, "", "text/plain", []);
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
        // Close alone: on Linux, Stop and then Close each remove the listener's prefixes, and the second removal binds
        // the port again to look its listener up, which fails when another process has taken the port meanwhile.
        _listener.Close();
        _loop.Wait(TimeSpan.FromSeconds(5));
    }

    public sealed record Request(string Method, string Path, string Query, IReadOnlyDictionary<string, string> Headers, string Body);

    private sealed record Answer(int Status, string Body, string ContentType, (string Name, string Value)[] Headers);
}
