using System.Net;
using System.Net.Http;
using InfluxDB.Client;
using InfluxDB.Client.Api.Domain;
using InfluxDB.Client.Core.Exceptions;
using Microsoft.Extensions.Logging;

namespace Telemetry.Storage.Influx;

/// <summary>
/// Writes line protocol through InfluxDB.Client's <c>WriteApiAsync</c> and returns once the server has answered 204 for
/// every request. Busy (429) and failing (5xx, unreachable) answers are retried with growing waits, a server's
/// <c>Retry-After</c> respected, for <see cref="SeriesServerOptions.RetryFor"/>; then the write fails.
/// </summary>
/// <remarks>
/// InfluxDB.Client's background <c>WriteApi</c> batches too, but it tells the caller nothing of what was written and
/// drops points when its buffer overflows. The commit pipeline already gathers thousands of readings per commit, so each
/// commit is written here and awaited, and nothing is buffered: the pipeline's bounded queue is the only place readings wait.
/// </remarks>
internal sealed partial class SeriesWriter(IWriteApiAsync writes, SeriesServerOptions options, string bucket, string org, TimeProvider timeProvider, ILogger logger)
{
    private const int Concurrency = 2;

    private volatile Refused? _refusal;

    /// <summary>
    /// Why the server refused the last write that failed, and when, if it refused (a token, organisation or bucket it
    /// does not know, a line it will not take) rather than failed to answer; null since a write was taken, or failed
    /// otherwise.
    /// </summary>
    public (string Reason, DateTimeOffset At)? Refusal => _refusal is { } refused ? (refused.Reason, refused.At) : null;

    public async Task WriteAsync(IReadOnlyList<string> chunks, CancellationToken cancellationToken)
    {
        if (chunks.Count == 1)
        {
            await WriteAsync(chunks[0], cancellationToken);
            return;
        }

        await Parallel.ForEachAsync(
            chunks,
            new ParallelOptions { MaxDegreeOfParallelism = Concurrency, CancellationToken = cancellationToken },
            (chunk, token) => new ValueTask(WriteAsync(chunk, token)));
    }

    private async Task WriteAsync(string lines, CancellationToken cancellationToken)
    {
        var started = timeProvider.GetTimestamp();
        var delay = options.RetryDelay;
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await writes.WriteRecordAsync(lines, WritePrecision.Ms, bucket, org, cancellationToken);
                _refusal = null;
                return;
            }
            catch (HttpException refused) when (!cancellationToken.IsCancellationRequested && !IsTransient(refused, out _))
            {
                _refusal = new Refused($"{Status(refused)} ({refused.Message})", timeProvider.GetUtcNow());
                throw;
            }
            catch (Exception exception) when (!cancellationToken.IsCancellationRequested && IsTransient(exception, out var retryAfter))
            {
                _refusal = null;
                var left = options.RetryFor - timeProvider.GetElapsedTime(started);
                if (left <= TimeSpan.Zero)
                {
                    throw;
                }

                var wait = Min(Min(retryAfter > delay ? retryAfter : delay, options.MaxRetryDelay), left);
                LogRetrying(logger, attempt, Status(exception), wait.TotalMilliseconds);
                await Task.Delay(wait, timeProvider, cancellationToken);
                delay = Min(delay * 2, options.MaxRetryDelay);
            }
        }
    }

    /// <summary>
    /// Busy (429), failing (5xx) or unreachable: worth trying again. Anything else (a refused token, a missing bucket, a
    /// malformed line) fails at once, since waiting would not change the answer.
    /// </summary>
    internal static bool IsTransient(Exception exception, out TimeSpan retryAfter)
    {
        retryAfter = TimeSpan.Zero;
        switch (exception)
        {
            case HttpException http when http.Status is 429 or >= 500 or 0:
                retryAfter = http.RetryAfter is > 0 and var seconds ? TimeSpan.FromSeconds(seconds) : TimeSpan.Zero;
                return true;
            case HttpException:
                return false;
            case HttpRequestException or System.IO.IOException or System.Net.Sockets.SocketException or TimeoutException or TaskCanceledException:
                return true;
            default:
                return exception.InnerException is { } inner && IsTransient(inner, out retryAfter);
        }
    }

    private static string Status(Exception exception) => exception switch
    {
        HttpException { Status: > 0 } http => ((HttpStatusCode)http.Status).ToString(),
        _ => exception.GetType().Name,
    };

    private static TimeSpan Min(TimeSpan a, TimeSpan b) => a < b ? a : b;

    private sealed record Refused(string Reason, DateTimeOffset At);

    [LoggerMessage(EventId = 2300, Level = LogLevel.Warning, Message = "Series write attempt {Attempt} failed ({Status}); retrying in {DelayMs} ms")]
    private static partial void LogRetrying(ILogger logger, int attempt, string status, double delayMs);
}
