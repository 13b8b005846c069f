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

    public async Task DeviceCredentialsChangedAsync(string deviceId, bool revoked)
    {
        if (!cluster.Value.Enabled)
        {
            await sessions.EndAsync(deviceId, revoked);
            return;
        }

        try
        {
            var redis = services.GetRequiredService<RedisConnection>();
            await (await redis.DatabaseAsync()).StreamAddAsync(
                redis.Key(CredentialsStream),
                [new NameValueEntry("device", deviceId), new NameValueEntry("revoked", revoked ? 1 : 0)],
                maxLength: StreamLength,
                useApproximateMaxLength: true);
        }
        catch (Exception exception)
        {
            // Never fail the rotation (its new token is shown once): end what this server holds at least.
            LogAnnounceFailed(logger, exception, deviceId);
            await sessions.EndAsync(deviceId, revoked);
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

        // From the changes made since this server started (a stream id is its entry's time in milliseconds; a few seconds
        // earlier, for the clocks' differences), not from when Redis first answers it: a revocation made while Redis was
        // away from this server would be passed over, and a connection opened meanwhile with the old token kept.
        RedisValue position = $"{(timeProvider.GetUtcNow() - StartMargin).ToUnixTimeMilliseconds()}-0";
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                var database = await redis.DatabaseAsync();
                foreach (var entry in await database.StreamReadAsync(key, position, count: 100))
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

    [LoggerMessage(EventId = 2410, Level = LogLevel.Warning, Message = "Could not tell the cluster that device {DeviceId}'s token changed; only this server's connections were ended")]
    private static partial void LogAnnounceFailed(ILogger logger, Exception exception, string deviceId);

    [LoggerMessage(EventId = 2411, Level = LogLevel.Warning, Message = "Could not read the cluster's token changes; retrying")]
    private static partial void LogReadFailed(ILogger logger, Exception exception);
}
