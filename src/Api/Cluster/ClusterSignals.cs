using Microsoft.Extensions.Options;
using StackExchange.Redis;
using Telemetry.Ingest;
using Telemetry.Storage.Redis;

namespace Telemetry.Api.Cluster;

/// <summary>
/// What one server must tell the others. A device's token rotated or revoked on one server ends the device's live
/// connections on whichever server holds them: alone, the server ends its own; in a cluster, the change is appended
/// to a Redis stream that every server (this one too) reads from where it left off, twice a second, so a server whose
/// connection to Redis dropped for a while still sees every change when it is back.
/// </summary>
public sealed partial class ClusterSignals(
    DeviceSessions sessions,
    IOptions<TelemetryClusterOptions> cluster,
    IServiceProvider services,
    TimeProvider timeProvider,
    ILogger<ClusterSignals> logger) : BackgroundService
{
    private const string CredentialsStream = "devices:credentials-changed";
    private const int StreamLength = 10_000;
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(500);

    // Tries at telling the cluster, and the waits between them.
    private static readonly TimeSpan[] AnnounceRetries = [TimeSpan.FromMilliseconds(200), TimeSpan.FromSeconds(1)];

    /// <summary>
    /// Ends the device's live connections on every server: false when the cluster could not be told (Redis away after
    /// three tries; this server's own are ended all the same), and those on other servers may go on: the caller says so,
    /// and a repeat of the change tells it again.
    /// </summary>
    public async Task<bool> DeviceCredentialsChangedAsync(string deviceId, bool revoked)
    {
        if (!cluster.Value.Enabled)
        {
            await sessions.EndAsync(deviceId, revoked);
            return true;
        }

        for (var attempt = 0; ; attempt++)
        {
            try
            {
                var redis = services.GetRequiredService<RedisConnection>();
                await (await redis.DatabaseAsync()).StreamAddAsync(
                    redis.Key(CredentialsStream),
                    [new NameValueEntry("device", deviceId), new NameValueEntry("revoked", revoked ? 1 : 0)],
                    maxLength: StreamLength,
                    useApproximateMaxLength: true);
                return true;
            }
            catch (Exception exception) when (attempt < AnnounceRetries.Length)
            {
                LogAnnounceRetrying(logger, exception, deviceId, attempt + 1);
                await Task.Delay(AnnounceRetries[attempt], timeProvider);
            }
            catch (Exception exception)
            {
                // This server's own connections end at least.
                LogAnnounceFailed(logger, exception, deviceId);
                await sessions.EndAsync(deviceId, revoked);
                return false;
            }
        }
    }

    private static readonly TimeSpan StartMargin = TimeSpan.FromSeconds(5);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!cluster.Value.Enabled)
        {
            return;
        }

        var redis = services.GetRequiredService<RedisConnection>();
        var key = redis.Key(CredentialsStream);

        // From the changes made since this server started, not from when Redis first answers it: a revocation made while
        // Redis was away from this server would be passed over, and a connection opened meanwhile with the old token
        // kept. A stream id is its entry's time by Redis's clock, in milliseconds: the start is read on that clock (its
        // time at first contact, less the time this server has run since, and a few seconds), so a server whose own
        // clock runs ahead does not pass over the changes of its first minutes.
        var started = timeProvider.GetTimestamp();
        RedisValue? position = null;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                var database = await redis.DatabaseAsync();
                if (position is null)
                {
                    var time = (RedisResult[])(await database.ExecuteAsync("TIME"))!;
                    var redisNowMs = ((long)time[0] * 1_000) + ((long)time[1] / 1_000);
                    position = $"{redisNowMs - (long)(timeProvider.GetElapsedTime(started) + StartMargin).TotalMilliseconds}-0";
                }

                foreach (var entry in await database.StreamReadAsync(key, position.Value, count: 100))
                {
                    position = entry.Id;
                    if (entry["device"] is { IsNullOrEmpty: false } device)
                    {
                        await sessions.EndAsync(device!, revoked: entry["revoked"] == 1);
                    }
                }
            }
            catch (Exception exception) when (!stoppingToken.IsCancellationRequested)
            {
                LogReadFailed(logger, exception);
            }

            await Task.Delay(PollInterval, timeProvider, stoppingToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    [LoggerMessage(EventId = 2412, Level = LogLevel.Warning, Message = "Could not tell the cluster that device {DeviceId}'s token changed (try {Attempt} of 3); trying again")]
    private static partial void LogAnnounceRetrying(ILogger logger, Exception exception, string deviceId, int attempt);

    [LoggerMessage(EventId = 2410, Level = LogLevel.Error, Message = "Could not tell the cluster that device {DeviceId}'s token changed; only this server's connections were ended, and the change was answered 503")]
    private static partial void LogAnnounceFailed(ILogger logger, Exception exception, string deviceId);

    [LoggerMessage(EventId = 2411, Level = LogLevel.Warning, Message = "Could not read the cluster's token changes; retrying")]
    private static partial void LogReadFailed(ILogger logger, Exception exception);
}
