using System.Globalization;
using Microsoft.Extensions.Options;
using StackExchange.Redis;
using Telemetry.Ingest;
using Telemetry.Storage.Redis;

namespace Telemetry.Api.Cluster;

/// <summary>
/// What one server must tell the others. A device's token rotated or revoked on one server ends the device's live
/// connections on whichever server holds them: alone, the server ends its own; in a cluster, the change is announced
/// on a Redis channel and every server (this one too) ends its own.
/// </summary>
public sealed partial class ClusterSignals(
    DeviceSessions sessions,
    IOptions<TelemetryClusterOptions> cluster,
    IServiceProvider services,
    ILogger<ClusterSignals> logger) : IHostedService
{
    private const string CredentialsChannel = "devices:credentials-changed";

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
            await (await redis.SubscriberAsync()).PublishAsync(redis.Channel(CredentialsChannel), (revoked ? "1:" : "0:") + deviceId);
        }
        catch (Exception exception)
        {
            // Never fail the rotation (its new token is shown once): end what this server holds at least.
            LogAnnounceFailed(logger, exception, deviceId);
            await sessions.EndAsync(deviceId, revoked);
        }
    }

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (!cluster.Value.Enabled)
        {
            return;
        }

        var redis = services.GetRequiredService<RedisConnection>();
        var subscriber = await redis.SubscriberAsync();
        await subscriber.SubscribeAsync(redis.Channel(CredentialsChannel), (channel, message) =>
        {
            var text = (string?)message ?? "";
            if (text.Length > 2)
            {
                _ = sessions.EndAsync(text[2..], revoked: text[0] == '1');
            }
        });
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    [LoggerMessage(EventId = 2410, Level = LogLevel.Warning, Message = "Could not tell the cluster that device {DeviceId}'s token changed; only this server's connections were ended")]
    private static partial void LogAnnounceFailed(ILogger logger, Exception exception, string deviceId);
}
