using Microsoft.Extensions.Options;
using Telemetry.Api.Alerts;
using Telemetry.Core.Storage;
using Telemetry.Ingest.Mqtt;
using Telemetry.Storage;
using Telemetry.Storage.Redis;

namespace Telemetry.Api.Cluster;

/// <summary>
/// In a cluster, a patient's alerts are raised on whichever server holds the patient's grain, but dashboards and MQTT
/// subscribers are connected to every server. Each server therefore follows the shared alert history: woken by the
/// announcement of each append (and every second besides, in case one was missed), it reads the events after the last
/// it handed on and gives them to its own event streams and MQTT subscribers.
/// </summary>
public sealed partial class AlertTail(
    IAlertStore store,
    RedisConnection redis,
    AlertBroadcaster streams,
    MqttAlertRelay mqtt,
    WebhookDispatcher webhooks,
    IOptions<TelemetryClusterOptions> cluster,
    ILogger<AlertTail> logger) : BackgroundService
{
    private const int PageSize = 500;
    private static readonly TimeSpan IdleWake = TimeSpan.FromSeconds(1);

    private readonly SemaphoreSlim _wakeup = new(0, 1);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!cluster.Value.Enabled)
        {
            return;
        }

        // From now on: what was raised before this server started is history, read through the API. Redis may be away
        // at start: keep trying rather than stop the server.
        long? position = null;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                if (position is null)
                {
                    var subscriber = await redis.SubscriberAsync();
                    await subscriber.SubscribeAsync(redis.Channel(RedisAlertStore.AppendedChannel), (_, _) => Wake());
                    position = await store.LastPositionAsync(stoppingToken);
                }

                IReadOnlyList<Core.Alerts.AlertEvent> events;
                do
                {
                    events = await store.ReadEventsAsync(position.Value, null, PageSize, stoppingToken);
                    if (events.Count > 0)
                    {
                        // An external broker gets each alert from the server that raised it (see AlertFanOut).
                        if (!mqtt.IsExternal)
                        {
                            foreach (var item in events)
                            {
                                mqtt.Publish(item);
                            }
                        }

                        streams.Publish(events);

                        // The server holding a webhook's delivery lease may not be the one that raised the alert.
                        webhooks.Notify();
                        position = events[^1].Position;
                    }
                }
                while (events.Count == PageSize);
            }
            catch (Exception exception) when (!stoppingToken.IsCancellationRequested)
            {
                LogReadFailed(logger, exception);
            }

            await ((Task)_wakeup.WaitAsync(IdleWake, stoppingToken)).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    private void Wake()
    {
        if (_wakeup.CurrentCount == 0)
        {
            try
            {
                _wakeup.Release();
            }
            catch (SemaphoreFullException)
            {
            }
        }
    }

    [LoggerMessage(EventId = 2420, Level = LogLevel.Warning, Message = "Could not read the shared alert history; retrying")]
    private static partial void LogReadFailed(ILogger logger, Exception exception);
}
