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

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!cluster.Value.Enabled)
        {
            return;
        }

        var redis = services.GetRequiredService<RedisConnection>();
        var key = redis.Key(CredentialsStream);
        RedisValue? position = null;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                var database = await redis.DatabaseAsync();

                // From the changes after this server started: connections opened before are its own.
                position ??= (await database.StreamRangeAsync(key, "-", "+", count: 1, messageOrder: Order.Descending)) is [var last, ..] ? last.Id : "0-0";
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

    [LoggerMessage(EventId = 2410, Level = LogLevel.Warning, Message = "Could not tell the cluster that device {DeviceId}'s token changed; only this server's connections were ended")]
    private static partial void LogAnnounceFailed(ILogger logger, Exception exception, string deviceId);

    [LoggerMessage(EventId = 2411, Level = LogLevel.Warning, Message = "Could not read the cluster's token changes; retrying")]
    private static partial void LogReadFailed(ILogger logger, Exception exception);
}
