using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Telemetry.Ingest.Grpc;
using Telemetry.Ingest.Mqtt;

namespace Telemetry.Ingest;

/// <summary>
/// The first step of a graceful shutdown (SIGTERM), before any service stops: the front doors take nothing new,
/// what is being committed gets its ack, and every device is told to reconnect, so the commit pipeline then drains a
/// queue that no longer grows and the grains and stores flush after it. A device resends what it has no ack for.
/// </summary>
public sealed partial class IngestDrain(
    MqttIngestEndpoint mqtt,
    ExternalBrokerIngest broker,
    GrpcStreamRegistry grpc,
    IOptions<IngestOptions> options,
    TimeProvider timeProvider,
    ILogger<IngestDrain> logger) : IHostedLifecycleService
{
    public async Task StoppingAsync(CancellationToken cancellationToken)
    {
        var streams = grpc.CloseAll();
        var clients = await mqtt.DrainAsync(options.Value.DrainTimeout, timeProvider, cancellationToken);
        var unacknowledged = await broker.DrainAsync(options.Value.DrainTimeout, cancellationToken);
        LogDrained(logger, clients, streams);
        if (broker.Enabled)
        {
            LogBrokerLeft(logger, unacknowledged);
        }
    }

    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    [LoggerMessage(EventId = 1402, Level = LogLevel.Information, Message = "Left the external broker; {Unacknowledged} messages left unacknowledged there for the next start")]
    private static partial void LogBrokerLeft(ILogger logger, int unacknowledged);

    [LoggerMessage(EventId = 1401, Level = LogLevel.Information, Message = "Ingest drained for shutdown: {MqttClients} MQTT devices and {GrpcStreams} gRPC streams told to reconnect")]
    private static partial void LogDrained(ILogger logger, int mqttClients, int grpcStreams);
}
