using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http.Connections;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using MQTTnet.AspNetCore;
using MQTTnet.Server;
using Telemetry.Ingest.Grpc;
using Telemetry.Ingest.Http;
using Telemetry.Ingest.Mqtt;
using Telemetry.Ingest.Pipeline;

namespace Telemetry.Ingest;

/// <summary>Wires the front doors (MQTT on Kestrel, gRPC) and the commit pipeline behind them.</summary>
public static class IngestServiceCollectionExtensions
{
    /// <summary>Registers ingest. Call after the store and Orleans, so the pipeline stops (and drains) before them.</summary>
    public static IServiceCollection AddIngest(this IServiceCollection services)
    {
        services.AddOptions<IngestOptions>().BindConfiguration(IngestOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton<IngestInstruments>();
        services.AddSingleton<DeviceAuthenticator>();
        services.TryAddSingleton(new DeviceCertificates());
        services.AddSingleton<DeviceRejectLog>();
        services.AddSingleton<DeviceRateLimiter>();
        services.AddSingleton<GrpcStreamRegistry>();
        services.AddSingleton<DeviceSessions>();
        services.AddHostedService<IngestDrain>();
        services.AddSingleton<CommitPipeline>();
        services.AddHostedService(sp => sp.GetRequiredService<CommitPipeline>());
        services.AddSingleton(sp => new SenMlResendClock(TimeSpan.FromMinutes(10), sp.GetRequiredService<TimeProvider>()));
        services.AddSingleton<MqttPayloadIngest>();
        services.AddSingleton<MqttIngestEndpoint>();
        services.AddOptions<ExternalBrokerOptions>().BindConfiguration(ExternalBrokerOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<ExternalBrokerIngest>();
        services.AddHostedService(sp => sp.GetRequiredService<ExternalBrokerIngest>());
        services.AddSingleton<MqttAlertRelay>();
        services.AddSingleton<HttpIngestEndpoint>();

        services.AddGrpc();
        services.AddOptions<global::Grpc.AspNetCore.Server.GrpcServiceOptions>()
            .Configure<IOptions<IngestOptions>>((grpc, ingest) => grpc.MaxReceiveMessageSize = ingest.Value.MaxMessageBytes);

        // Each connection keeps a packet writer for what the server sends it: PUBACKs, DISCONNECTs, alerts to subscribers.
        // It starts at 256 bytes (MQTTnet's default is 4 KB), grows for a larger packet, and gives back anything above
        // 4 KB after one: about 4 KB less per idle connection. (The writer's size never lost a DISCONNECT's reason code,
        // as was once thought: the connection's close did, and MqttOrderlyClose mends it.)
        // A packet to send waits at most 10 s for the connection (MQTTnet's default is 100 s): a device that stopped
        // reading its socket holds a DISCONNECT, at shutdown or when its token changes, no longer than that. It is also
        // how long a new connection has to send its CONNECT.
        var mqttOptions = new MqttServerOptionsBuilder().WithoutDefaultEndpoint().WithDefaultCommunicationTimeout(TimeSpan.FromSeconds(10)).Build();
        mqttOptions.WriterBufferSize = 256;
        mqttOptions.WriterBufferSizeMax = 4096;
        services.AddHostedMqttServer(mqttOptions);
        services.AddMqttConnectionHandler();
        services.AddConnections();
        return services;
    }

    /// <summary>
    /// Maps the gRPC ingest stream, the HTTP bulk upload and MQTT over WebSocket at <paramref name="mqttWebSocketPath"/>
    /// (none when devices use an external broker), and attaches the MQTT handlers. MQTT over WebSocket is MQTTnet's
    /// connection handler with its <c>mqtt</c> subprotocol, as its <c>MapMqtt</c> maps it, but over WebSocket only (not the
    /// other transports of ASP.NET Core's connections) and behind the same packet size guard and orderly close as MQTT
    /// over TCP: MQTTnet would otherwise read a packet of any size its header claims.
    /// </summary>
    public static WebApplication MapIngest(this WebApplication app, string mqttWebSocketPath = "/mqtt")
    {
        app.MapGrpcService<GrpcIngestService>();
        HttpIngestEndpoint.Map(app);
        if (!app.Services.GetRequiredService<IOptions<ExternalBrokerOptions>>().Value.Enabled)
        {
            var options = new HttpConnectionDispatcherOptions { Transports = HttpTransportType.WebSockets };
            options.WebSockets.SubProtocolSelector = MqttSubProtocolSelector.SelectSubProtocol;
            app.MapConnections(
                mqttWebSocketPath,
                options,
                connection => connection.Use(MqttPacketSizeGuard.ForIngest(app.Services)).Use(MqttOrderlyClose.Middleware).UseConnectionHandler<MqttConnectionHandler>());
        }

        var endpoint = app.Services.GetRequiredService<MqttIngestEndpoint>();
        var alerts = app.Services.GetRequiredService<MqttAlertRelay>();
        var external = app.Services.GetRequiredService<ExternalBrokerIngest>().Enabled;
        app.UseMqttServer(server =>
        {
            endpoint.Attach(server);
            if (!external)
            {
                alerts.Attach(server);
            }
        });
        return app;
    }
}
