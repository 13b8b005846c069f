using Microsoft.AspNetCore.HttpOverrides;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Options;
using MQTTnet.AspNetCore;
using OpenTelemetry.Metrics;
using Telemetry.Api.Alerts;
using Telemetry.Api.Audit;
using Telemetry.Api.Cluster;
using Telemetry.Api.Devices;
using Telemetry.Api.Fhir;
using Telemetry.Api.Health;
using Telemetry.Api.Pages;
using Telemetry.Api.Patients;
using Telemetry.Api.Security;
using Telemetry.Api.Trends;
using Telemetry.Core.Alerts;
using Telemetry.Core.Storage;
using Telemetry.Grains;
using Telemetry.Ingest;
using Telemetry.Ingest.Mqtt;
using Telemetry.Storage;
using Telemetry.Storage.Audit;
using Telemetry.Storage.Influx;
using Telemetry.Storage.Redis;
using Telemetry.Storage.Retention;

namespace Telemetry.Api.Hosting;

/// <summary>The composition root: what the one Telemetry executable runs and where it listens.</summary>
public static partial class TelemetryServerExtensions
{
    /// <summary>HTTP/2's flow-control windows, for a connection and for each of its streams.</summary>
    private const int Http2WindowBytes = 128 * 1024;

    public static WebApplicationBuilder AddTelemetryServer(this WebApplicationBuilder builder)
    {
        // A wrong catalogue entry would store wrong values under a clinical code: refuse to start instead.
        Core.Vitals.VitalCatalogue.Validate();
        var services = builder.Services;
        services.AddOptions<ServerOptions>().BindConfiguration(ServerOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddOptions<TlsOptions>().BindConfiguration(TlsOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        var server = builder.Configuration.GetSection(ServerOptions.Section).Get<ServerOptions>() ?? new ServerOptions();

        var tls = builder.Configuration.GetSection(TlsOptions.Section).Get<TlsOptions>() ?? new TlsOptions();
        if (tls.Enabled)
        {
            // Registered before ingest, whose default accepts no device certificates.
            services.AddSingleton(_ => ServerTls.LoadDeviceAuthorities(tls));
            services.AddSingleton(sp => new ServerTls(
                tls, sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILogger<ServerTls>>(), sp.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>()));
        }

        // With an external broker the devices' MQTT goes there: the server listens for no MQTT of its own.
        var hostsMqtt = builder.Configuration.GetSection(ExternalBrokerOptions.Section).Get<ExternalBrokerOptions>() is not { Enabled: true };
        if (server.SharedPort(hostsMqtt, tls.Enabled) is { } shared)
        {
            throw new InvalidOperationException(shared);
        }

        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            // One limit over every listener (ConnectionLimit), instead of Kestrel's, which each listener counts apart.
            var limit = new ConnectionLimit(server.MaxConnections, kestrel.ApplicationServices.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>());
            void Listen(string address, int port, Action<ListenOptions> configure) => ListenOn(kestrel, address, port, listen =>
            {
                listen.Use(limit.Wrap);
                configure(listen);
            });

            // What an HTTP/2 connection may send that the server has not read: Kestrel's windows (1 MiB a connection,
            // 768 KiB a stream by default) let every device's connection fill that much while its stream is held back
            // (its in-flight bound, a full commit queue), which thousands of gRPC devices turn into gigabytes. 128 KiB
            // still carries a stream of about 130,000 readings a second over a 100 ms round trip.
            kestrel.Limits.Http2.InitialConnectionWindowSize = Http2WindowBytes;
            kestrel.Limits.Http2.InitialStreamWindowSize = Http2WindowBytes;
            Listen(server.ListenAddress, server.HttpPort, listen => listen.Protocols = HttpProtocols.Http1);
            Listen(server.ListenAddress, server.GrpcPort, listen => listen.Protocols = HttpProtocols.Http2);
            Listen(server.ListenAddress, hostsMqtt ? server.MqttPort : 0, UseMqtt);
            if (!tls.Enabled)
            {
                return;
            }

            var serverTls = kestrel.ApplicationServices.GetRequiredService<ServerTls>();
            Listen(server.ListenAddress, server.HttpsPort, listen =>
            {
                listen.Protocols = HttpProtocols.Http1AndHttp2;
                listen.UseHttps(serverTls.Https());
            });
            Listen(server.ListenAddress, hostsMqtt ? server.MqttTlsPort : 0, listen =>
            {
                var instruments = listen.ApplicationServices.GetRequiredService<IngestInstruments>();
                listen.UseHttps(serverTls.Mqtt(
                    listen.ApplicationServices.GetRequiredService<DeviceCertificates>(),
                    () => instruments.AuthenticationFailed(MqttIngestEndpoint.Protocol)));
                UseMqtt(listen);
            });
        });

        // Order matters for shutdown, which runs in reverse: ingest drains first, then the silo deactivates grains
        // (which write their last rollups), then the store.
        services.AddSingleton(TimeProvider.System);
        var storage = builder.Configuration.GetSection(StorageOptions.Section).Get<StorageOptions>() ?? new StorageOptions();
        var cluster = builder.Configuration.GetSection(TelemetryClusterOptions.Section).Get<TelemetryClusterOptions>() ?? new TelemetryClusterOptions();
        services.AddOptions<TelemetryClusterOptions>().BindConfiguration(TelemetryClusterOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddTelemetryStorage(storage, cluster);
        services.AddOptions<HostOptions>().PostConfigure<IOptions<IngestOptions>, IServiceProvider>((host, ingest, sp) =>
            host.ShutdownTimeout = ShutdownTimeout(host.ShutdownTimeout, ingest.Value.DrainTimeout, sp.GetService<SeriesBackend>()?.ReadableAfter ?? TimeSpan.Zero));
        services.AddSingleton<GrainInstruments>();
        builder.UseOrleans(silo => UseClustering(silo, server, cluster));
        services.AddIngest();

        // A late reading's minute, hour and day are recomputed from the raw readings: all of them must still be there
        // for any reading ingest takes, even one at the backfill horizon, in a day that began the day before.
        services.AddOptions<RetentionOptions>().Validate<IOptions<IngestOptions>>(
            (retention, ingest) => retention.RawDays == 0 || retention.RawDays >= Math.Ceiling(ingest.Value.BackfillHorizon.TotalDays) + 1,
            "Telemetry:Retention:RawDays must be 0 (forever) or at least a day more than Telemetry:Ingest:BackfillHorizon: a late reading's windows are recomputed from the raw readings.");
        services.AddSingleton<ClusterSignals>();
        services.AddHostedService(sp => sp.GetRequiredService<ClusterSignals>());
        services.AddSingleton<SeriesSettingsCheck>();
        services.AddHostedService(sp => sp.GetRequiredService<SeriesSettingsCheck>());
        services.AddSingleton<DeliveryLease>();
        if (cluster.Enabled)
        {
            services.AddHostedService<AlertTail>();
            services.AddHostedService<ClusterDepartures>();
        }

        services.AddOptions<AlertOptions>().BindConfiguration(AlertOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<AlertBroadcaster>();
        services.AddSingleton<WebhookDispatcher>();
        services.AddHostedService(sp => sp.GetRequiredService<WebhookDispatcher>());
        services.AddSingleton<IAlertPublisher, AlertFanOut>();
        services.AddSingleton<AlertWatchService>();
        services.AddHostedService(sp => sp.GetRequiredService<AlertWatchService>());
        services.ConfigureHttpJsonOptions(json => Core.TelemetryJson.Configure(json.SerializerOptions));

        services.AddSingleton<TrendReader>();
        services.AddSingleton<LiveStreamSlots>();
        services.AddSingleton<AlertStreamSlots>();
        services.AddTelemetryAuthentication();
        services.AddSingleton<AuditLog>();
        services.AddSingleton<Core.Storage.IAuditTrail>(sp => sp.GetRequiredService<AuditLog>());
        services.AddHostedService(sp => sp.GetRequiredService<AuditLog>());
        services.AddProblemDetails();

        // FHIR for browser-based SMART apps on any origin: tokens go in the Authorization header, never in cookies, so
        // a page of another origin reaches nothing its token does not.
        services.AddCors(cors => cors.AddPolicy(Fhir.FhirEndpoints.CorsPolicy, policy => policy
            .AllowAnyOrigin()
            .WithMethods("GET", "POST")
            .WithHeaders("Authorization", "Accept", "Content-Type", "Prefer")
            .WithExposedHeaders("Retry-After", "WWW-Authenticate")
            .SetPreflightMaxAge(TimeSpan.FromHours(1))));

        // A request whose arguments cannot be bound is answered 400 through the endpoint's filters (so it is audited), in
        // every environment: Development would otherwise throw before them.
        services.Configure<Microsoft.AspNetCore.Routing.RouteHandlerOptions>(routeHandlers => routeHandlers.ThrowOnBadRequest = false);

        // A request at fault as it was read (a body over the size allowed, one that stopped coming) is answered with its
        // own status (413, 408, 400), as the audit records it, not as a server error.
        services.Configure<ExceptionHandlerOptions>(handler =>
            handler.StatusCodeSelector = exception => exception is Microsoft.AspNetCore.Http.BadHttpRequestException bad ? bad.StatusCode : StatusCodes.Status500InternalServerError);
        services.AddOpenApi();
        services.AddTelemetryHealthChecks();
        services.AddOpenTelemetry().WithMetrics(metrics => metrics
            .AddMeter(IngestInstruments.MeterName)
            .AddAspNetCoreInstrumentation()
            .AddRuntimeInstrumentation()
            // Every scrape is read fresh (the exporter would otherwise answer from a copy up to 300 ms old).
            .AddPrometheusExporter(prometheus => prometheus.ScrapeResponseCacheDurationMilliseconds = 0));
        return builder;
    }

    public static WebApplication MapTelemetryServer(this WebApplication app)
    {
        app.UseExceptionHandler();

        // Bodiless error answers become problem+json, but an OperationOutcome under /fhir, where every error is one (a
        // method not served there, HEAD say, is answered 405 by routing, before any FHIR code runs).
        app.UseStatusCodePages(async context =>
        {
            var http = context.HttpContext;
            if (http.Request.Path.StartsWithSegments("/fhir", StringComparison.OrdinalIgnoreCase))
            {
                await FhirEndpoints.StatusOutcome(http.Response.StatusCode).ExecuteAsync(http);
            }
            else if (!await http.RequestServices.GetRequiredService<IProblemDetailsService>().TryWriteAsync(
                new ProblemDetailsContext { HttpContext = http, ProblemDetails = { Status = http.Response.StatusCode } }))
            {
                http.Response.ContentType = "text/plain";
                await http.Response.WriteAsync($"Status Code: {http.Response.StatusCode}");
            }
        });
        UseTrustedProxies(app, app.Services.GetRequiredService<IOptions<ServerOptions>>().Value);

        // Patients' data is not kept in caches: a phone's HTTP cache, a browser's disk cache, a proxy. An answer that sets
        // its own (an event stream's, SMART discovery's public max-age) keeps it.
        app.Use(static (context, next) =>
        {
            if (context.Request.Path.StartsWithSegments("/api", StringComparison.OrdinalIgnoreCase)
                || context.Request.Path.StartsWithSegments("/fhir", StringComparison.OrdinalIgnoreCase))
            {
                context.Response.OnStarting(static state =>
                {
                    var headers = ((HttpResponse)state).Headers;
                    if (headers.CacheControl.Count == 0)
                    {
                        headers.CacheControl = "no-store";
                    }

                    return Task.CompletedTask;
                }, context.Response);
            }

            return next(context);
        });
        app.MapPages();

        // Before access: a CORS preflight carries no token, and is answered here.
        app.UseCors();
        app.UseTelemetryAccess();
        app.UseWebSockets();
        app.MapIngest(app.Services.GetRequiredService<IOptions<ServerOptions>>().Value.MqttWebSocketPath);
        app.MapDeviceEndpoints();
        app.MapPatientEndpoints();
        app.MapLiveEndpoints();
        app.MapAlertEndpoints();
        app.MapFhirEndpoints();
        app.MapCareTeamEndpoints();
        app.MapAuditEndpoints();
        app.MapTelemetryHealthChecks();
        app.MapPrometheusScrapingEndpoint("/metrics");
        app.MapOpenApi();

        // A stop whose shutdown timeout cut the grains' deactivation short, or whose windows could not be written, leaves
        // them to the next start to recover, as after a crash (the database keeps its marker).
        app.Lifetime.ApplicationStopped.Register(() =>
        {
            if (app.Services.GetRequiredService<GrainInstruments>().PatientsHoldingOpenWindows is > 0 and var holding)
            {
                LogOpenWindowsLeft(app.Logger, holding);
                app.Services.GetRequiredService<ICommitLog>().OpenWindowsLeft();
            }
        });

        // Make the admin token and the development signing key (or their files) exist from the first second.
        app.Services.GetRequiredService<AdminToken>();
        app.Services.GetRequiredService<DevelopmentTokens>();

        // The live alert streams' broadcaster reads where the alert log stands before any grain hands an event on.
        app.Services.GetRequiredService<AlertBroadcaster>();
        if (app.Services.GetService<ServerTls>() is { } tls)
        {
            var server = app.Services.GetRequiredService<IOptions<ServerOptions>>().Value;
            var certificate = tls.Certificate;
            LogTls(app.Logger, server.HttpsPort, server.MqttTlsPort, certificate.Subject, certificate.NotAfter.ToUniversalTime(), app.Services.GetRequiredService<DeviceCertificates>().Enabled);
            var now = app.Services.GetRequiredService<TimeProvider>().GetUtcNow();
            if (tls.ExpiryProblem(certificate, now) is { } problem)
            {
                // Served all the same (the plain ports, and the dashboards over them, go on working), and told until renewed
                // by /healthz (Degraded) and by telemetry_tls_certificate_expiration_timestamp_seconds.
                if (problem.Ended)
                {
                    LogTlsExpired(app.Logger, problem.Problem);
                }
                else
                {
                    LogTlsEnding(app.Logger, problem.Problem);
                }
            }
        }

        return app;
    }

    /// <summary>
    /// Alone, the silo is its own cluster on loopback. In cluster mode, membership is kept in Redis: every server with the
    /// same Redis and cluster id joins, and patients' grains spread across them (and move when one dies).
    /// </summary>
    private static void UseClustering(ISiloBuilder silo, ServerOptions server, TelemetryClusterOptions cluster)
    {
        if (!cluster.Enabled)
        {
            silo.UseLocalhostClustering(siloPort: server.SiloPort, gatewayPort: 0);
            return;
        }

        silo.UseRedisClustering(options =>
        {
            options.ConfigurationOptions = cluster.RedisConfiguration();
            options.ConfigurationOptions.AbortOnConnectFail = false;
        });
        silo.Configure<Orleans.Configuration.ClusterOptions>(options =>
        {
            options.ClusterId = cluster.ClusterId;
            options.ServiceId = cluster.ClusterId;
        });
        silo.Configure<Orleans.Configuration.EndpointOptions>(options =>
        {
            options.SiloPort = server.SiloPort;
            options.GatewayPort = 0;
            if (cluster.AdvertisedAddress is { Length: > 0 } address)
            {
                options.AdvertisedIPAddress = System.Net.IPAddress.Parse(address);
            }
        });
    }

    /// <summary>
    /// Behind trusted proxies, the client's address (for rate limits, sign-in lockouts and logs) and scheme come from the
    /// proxy's forwarded headers; from anyone else the headers are ignored.
    /// </summary>
    private static void UseTrustedProxies(WebApplication app, ServerOptions server)
    {
        if (server.TrustedProxies.Length == 0 || !server.TryParseTrustedProxies(out var addresses, out var networks, out _))
        {
            return;
        }

        // No limit on how many listed proxies the header is walked back through (load balancer, then nginx); it stops
        // at the first address that is not a listed proxy, which is the client.
        var forwarded = new ForwardedHeadersOptions { ForwardedHeaders = ForwardedHeaders.XForwardedFor | ForwardedHeaders.XForwardedProto, ForwardLimit = null };
        forwarded.KnownProxies.Clear();
        forwarded.KnownIPNetworks.Clear();
        addresses.ForEach(forwarded.KnownProxies.Add);
        networks.ForEach(forwarded.KnownIPNetworks.Add);
        app.UseForwardedHeaders(forwarded);
    }

    /// <summary>
    /// What the host allows a shutdown: ingest's drain (<see cref="IngestOptions.DrainTimeout"/>), then, with a series
    /// store, the wait until it shows the last commits (<paramref name="readableAfter"/>), then the silo deactivating the
    /// grains and the store closing, which <see cref="ShutdownRest"/> is left for. Never less than the host's own
    /// setting (30 s unless configured).
    /// </summary>
    private static TimeSpan ShutdownTimeout(TimeSpan configured, TimeSpan drain, TimeSpan readableAfter)
    {
        var needed = drain + readableAfter + ShutdownRest;
        return needed > configured ? needed : configured;
    }

    private static readonly TimeSpan ShutdownRest = TimeSpan.FromSeconds(20);

    /// <summary>
    /// MQTT on a listener. Packets far over the payload limit are refused from their header, before they are buffered;
    /// the payload limit itself is answered per message (0x99) by the ingest endpoint. A connection the broker ends sends
    /// what was written to it (its DISCONNECT) before it closes.
    /// </summary>
    private static void UseMqtt(ListenOptions listen)
    {
        listen.Use(MqttPacketSizeGuard.ForIngest(listen.ApplicationServices));
        listen.Use(MqttOrderlyClose.Middleware);
        listen.UseMqtt();
    }

    private static void ListenOn(KestrelServerOptions kestrel, string address, int port, Action<ListenOptions> configure)
    {
        if (port == 0)
        {
            return;
        }

        switch (address)
        {
            case "*" or "0.0.0.0" or "::":
                kestrel.ListenAnyIP(port, configure);
                break;
            case "localhost":
                kestrel.ListenLocalhost(port, configure);
                break;
            default:
                // Kestrel's listeners are set before the options are validated at start: the setting is named here too.
                kestrel.Listen(
                    System.Net.IPAddress.TryParse(address, out var ip)
                        ? ip
                        : throw new InvalidOperationException($"{ServerOptions.Section}:ListenAddress: '{address}' is neither *, localhost nor an IP address such as 127.0.0.1."),
                    port,
                    configure);
                break;
        }
    }

    [LoggerMessage(EventId = 1504, Level = LogLevel.Warning,
        Message = "{Patients} patients' open windows were not written as the server stopped (the shutdown timeout cut their deactivation short, or the write failed): the next start recomputes them")]
    private static partial void LogOpenWindowsLeft(ILogger logger, int patients);

    [LoggerMessage(EventId = 1505, Level = LogLevel.Error, Message = "TLS: {Problem}")]
    private static partial void LogTlsExpired(ILogger logger, string problem);

    [LoggerMessage(EventId = 1506, Level = LogLevel.Warning, Message = "TLS: {Problem}")]
    private static partial void LogTlsEnding(ILogger logger, string problem);

    [LoggerMessage(EventId = 1500, Level = LogLevel.Information,
        Message = "TLS on HTTPS port {HttpsPort} and MQTT port {MqttTlsPort}, certificate {Subject} valid until {NotAfter:u}; device certificates accepted: {DeviceCertificates}")]
    private static partial void LogTls(ILogger logger, int httpsPort, int mqttTlsPort, string subject, DateTime notAfter, bool deviceCertificates);
}
