using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Grpc.Core;
using Grpc.Net.Client;
using MQTTnet;
using MQTTnet.Formatter;
using Telemetry.Protos;

namespace Telemetry.EndToEnd.Tests;

/// <summary>
/// TLS on every front door: HTTPS and gRPC over TLS on one port, MQTT over TLS with a token or a device certificate
/// (mutual TLS), and the plain ports off. Certificates that are expired, from another authority, or name an unknown or
/// revoked device are refused.
/// </summary>
public sealed class TlsTests(TlsFixture fixture) : IClassFixture<TlsFixture>
{
    private TelemetryServer Server => fixture.Server;

    private TestCertificates Certificates => fixture.Certificates;

    [Fact]
    public async Task Rest_and_grpc_work_over_tls_and_the_plain_ports_are_off()
    {
        var token = await Server.ProvisionAsync("tls-phone", "p-tls-1");
        using var channel = GrpcChannel.ForAddress($"https://127.0.0.1:{Server.HttpsPort}", new GrpcChannelOptions { HttpHandler = Certificates.Handler() });
        using var call = new Ingest.IngestClient(channel).Stream(new Metadata { { "authorization", $"Bearer {token}" } });
        await call.RequestStream.WriteAsync(Devices.ProtobufBatch(1, Devices.RecentMinute(), "heart_rate", "", 71));
        await call.RequestStream.CompleteAsync();
        Assert.True(await call.ResponseStream.MoveNext());
        Assert.Equal(AckStatus.Committed, call.ResponseStream.Current.Status);

        // Kestrel names every listener it opened: only the two TLS ones.
        await Server.OutputWhenAsync($"Now listening on: https://127.0.0.1:{Server.HttpsPort}");
        var listening = (await Server.OutputWhenAsync($"Now listening on: https://127.0.0.1:{Server.MqttTlsPort}")).Split('\n')
            .Where(line => line.Contains("Now listening on: ", StringComparison.Ordinal))
            .Select(line => line[(line.IndexOf("Now listening on: ", StringComparison.Ordinal) + 18)..].Trim())
            .Order(StringComparer.Ordinal);
        Assert.Equal(new[] { $"https://127.0.0.1:{Server.HttpsPort}", $"https://127.0.0.1:{Server.MqttTlsPort}" }.Order(StringComparer.Ordinal), listening);

        using var untrusting = new HttpClient { BaseAddress = new Uri($"https://127.0.0.1:{Server.HttpsPort}") };
        await Assert.ThrowsAsync<HttpRequestException>(() => untrusting.GetAsync("/healthz"));
        using var plainText = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{Server.HttpsPort}") };
        await Assert.ThrowsAsync<HttpRequestException>(() => plainText.GetAsync("/healthz"));
    }

    [Fact]
    public async Task A_device_signs_in_over_mqtt_tls_with_its_token_or_with_a_certificate_naming_it()
    {
        var token = await Server.ProvisionAsync("tls-token-watch", "p-tls-2");
        await Server.ProvisionAsync("tls-cert-watch", "p-tls-3");
        using var certificate = Certificates.Device("tls-cert-watch");
        var start = Devices.RecentMinute();

        using var byToken = await ConnectedAsync(null, "tls-token-watch", "tls-token-watch", token);
        using var byCertificate = await ConnectedAsync(certificate, "tls-cert-watch", null, null);

        var tokenAck = await Devices.PublishAsync(byToken, "devices/tls-token-watch/vitals", Devices.JsonHeartRates(1, start, 70, 71));
        var certificateAck = await Devices.PublishAsync(byCertificate, "devices/tls-cert-watch/vitals", Devices.JsonHeartRates(1, start, 80, 81, 82));
        Assert.Equal(MqttClientPublishReasonCode.Success, tokenAck.ReasonCode);
        Assert.Equal(MqttClientPublishReasonCode.Success, certificateAck.ReasonCode);
        Assert.Equal(3, (await Server.TrendAsync("p-tls-3", "heart_rate", start, start.AddMinutes(1), count: 3)).TotalCount);

        // MQTT over secure WebSocket on the HTTPS port, with the token.
        using var overWebSocket = new MqttClientFactory().CreateMqttClient();
        var connected = await overWebSocket.ConnectAsync(new MqttClientOptionsBuilder()
            .WithWebSocketServer(ws => ws.WithUri($"wss://127.0.0.1:{Server.HttpsPort}/mqtt"))
            .WithTlsOptions(tls => tls.UseTls().WithCertificateValidationHandler(args => Certificates.Trusts(args.Certificate)))
            .WithClientId("tls-token-watch")
            .WithCredentials("tls-token-watch", token)
            .WithProtocolVersion(MqttProtocolVersion.V500)
            .Build());
        Assert.Equal(MqttClientConnectResultCode.Success, connected.ResultCode);
        var webSocketAck = await Devices.PublishAsync(overWebSocket, "devices/tls-token-watch/vitals", Devices.JsonHeartRates(3, start.AddSeconds(10), 72));
        Assert.Equal(MqttClientPublishReasonCode.Success, webSocketAck.ReasonCode);

        // A certificate device still publishes only to its own topic.
        var stray = await Devices.PublishAsync(byCertificate, "devices/tls-token-watch/vitals", Devices.JsonHeartRates(2, start, 90));
        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, stray.ReasonCode);
    }

    [Fact]
    public async Task Expired_foreign_unknown_revoked_and_borrowed_device_certificates_are_refused()
    {
        await Server.ProvisionAsync("tls-expired", "p-tls-4");
        await Server.ProvisionAsync("tls-foreign", "p-tls-4");
        await Server.ProvisionAsync("tls-revoked", "p-tls-4");
        await Server.ProvisionAsync("tls-owner", "p-tls-4");
        using var revoked = await Server.Http.DeleteAsync("/api/devices/tls-revoked/token");
        Assert.True(revoked.IsSuccessStatusCode);
        var failuresBefore = await AuthenticationFailuresAsync();

        using (var expired = Certificates.Device("tls-expired", expired: true))
        {
            await Assert.ThrowsAnyAsync<MQTTnet.Exceptions.MqttCommunicationException>(() => ConnectAsync(expired, "tls-expired", null, null));
        }

        using (var foreign = Certificates.Device("tls-foreign", fromOtherAuthority: true))
        {
            await Assert.ThrowsAnyAsync<MQTTnet.Exceptions.MqttCommunicationException>(() => ConnectAsync(foreign, "tls-foreign", null, null));
        }

        using (var unknown = Certificates.Device("tls-nobody"))
        {
            Assert.Equal(MqttClientConnectResultCode.NotAuthorized, await ConnectAsync(unknown, "tls-nobody", null, null));
        }

        using (var ofRevoked = Certificates.Device("tls-revoked"))
        {
            Assert.Equal(MqttClientConnectResultCode.NotAuthorized, await ConnectAsync(ofRevoked, "tls-revoked", null, null));
        }

        using (var owner = Certificates.Device("tls-owner"))
        {
            Assert.Equal(MqttClientConnectResultCode.BadUserNameOrPassword, await ConnectAsync(owner, "tls-expired", "tls-expired", null));
            Assert.Equal(MqttClientConnectResultCode.ClientIdentifierNotValid, await ConnectAsync(owner, "tls-expired", null, null));
            Assert.Equal(MqttClientConnectResultCode.Success, await ConnectAsync(owner, "tls-owner", null, null));
        }

        Assert.Contains("device certificate CN=tls-expired", await Server.OutputWhenAsync("device certificate CN=tls-expired"));
        Assert.Contains("device certificate CN=tls-foreign", await Server.OutputWhenAsync("device certificate CN=tls-foreign"));
        // Two refused at the handshake, four at CONNECT. The scrape is cached for a moment, so read until it catches up.
        var deadline = DateTime.UtcNow.AddSeconds(10);
        double failures;
        while ((failures = await AuthenticationFailuresAsync()) < failuresBefore + 6 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(200);
        }

        Assert.Equal(failuresBefore + 6, failures);
    }

    [Fact]
    public async Task A_renewed_certificate_is_served_without_a_restart()
    {
        var before = await ServedSerialAsync(Server.HttpsPort);
        var renewed = Certificates.RenewServerCertificate();
        Assert.NotEqual(before, renewed);

        var deadline = DateTime.UtcNow.AddSeconds(15);
        while ((await ServedSerialAsync(Server.MqttTlsPort) != renewed || await ServedSerialAsync(Server.HttpsPort) != renewed) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(250);
        }

        Assert.Equal(renewed, await ServedSerialAsync(Server.HttpsPort));
        Assert.Equal(renewed, await ServedSerialAsync(Server.MqttTlsPort));
        Assert.Contains("TLS certificate reloaded", await Server.OutputWhenAsync("TLS certificate reloaded"));
    }

    [Fact]
    public async Task A_certificate_near_its_end_is_reported_until_renewed_and_each_change_logged_once()
    {
        try
        {
            // A renewal that went wrong: a certificate for five days only. Seen with no connection coming (the background
            // checks read the files again), logged once, and /healthz says so while the server stays ready.
            Certificates.RenewServerCertificate(TimeSpan.FromDays(5));
            Assert.Contains("expires on", Line(await Server.OutputWhenAsync("Health check certificate turned Degraded"), "Health check certificate turned Degraded"));
            using var client = Server.ClientWith(null);
            for (var probe = 0; probe < 3; probe++)
            {
                using var health = await client.GetAsync("/healthz");
                Assert.Equal(HttpStatusCode.OK, health.StatusCode);
                using var report = JsonDocument.Parse(await health.Content.ReadAsStringAsync());
                Assert.Equal("Degraded", report.RootElement.GetProperty("status").GetString());
                var certificate = report.RootElement.GetProperty("checks").GetProperty("certificate");
                Assert.Equal("Degraded", certificate.GetProperty("status").GetString());
                Assert.Contains("in 4 days", certificate.GetProperty("description").GetString());
            }

            using (var live = await client.GetAsync("/livez"))
            {
                Assert.Equal(HttpStatusCode.OK, live.StatusCode);
                Assert.Contains("\"Healthy\"", await live.Content.ReadAsStringAsync());
            }

            var metrics = await client.GetStringAsync("/metrics");
            var expiration = double.Parse(
                Line(metrics, "telemetry_tls_certificate_expiration_timestamp_seconds").Split(' ')[^1], System.Globalization.CultureInfo.InvariantCulture);
            Assert.InRange(DateTimeOffset.FromUnixTimeSeconds((long)expiration) - DateTimeOffset.UtcNow, TimeSpan.FromDays(4.9), TimeSpan.FromDays(5));

            // Probes of /healthz log nothing themselves, however often they find it degraded: the change was logged.
            Assert.Single(Server.Output.Split('\n'), line => line.Contains("Health check certificate turned Degraded", StringComparison.Ordinal));
            Assert.DoesNotContain("with status Degraded", Server.Output, StringComparison.Ordinal);
        }
        finally
        {
            Certificates.RenewServerCertificate();
        }

        Assert.Contains("Health check certificate is Healthy again", await Server.OutputWhenAsync("Health check certificate is Healthy again"));
    }

    private static string Line(string text, string containing) =>
        text.Split('\n').LastOrDefault(line => line.Contains(containing, StringComparison.Ordinal) && !line.StartsWith('#')) ?? $"(no line with {containing})";

    private async Task<string> ServedSerialAsync(int port)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync("127.0.0.1", port);
        await using var tls = new System.Net.Security.SslStream(tcp.GetStream());
        await tls.AuthenticateAsClientAsync(new System.Net.Security.SslClientAuthenticationOptions
        {
            TargetHost = "localhost",
            RemoteCertificateValidationCallback = (_, certificate, _, _) => Certificates.Trusts(certificate),
        });
        using var served = new X509Certificate2(tls.RemoteCertificate!);
        return served.SerialNumber;
    }

    private Task<IMqttClient> ConnectedAsync(X509Certificate2? certificate, string clientId, string? user, string? password) =>
        Devices.ConnectMqttAsync(Options(certificate, clientId, user, password));

    private Task<MqttClientConnectResultCode> ConnectAsync(X509Certificate2? certificate, string clientId, string? user, string? password) =>
        Devices.TryConnectMqttAsync(Options(certificate, clientId, user, password));

    private MqttClientOptions Options(X509Certificate2? certificate, string clientId, string? user, string? password) =>
        Certificates.MqttOverTls(Server.MqttTlsPort, clientId, user, password, certificate);

    private async Task<double> AuthenticationFailuresAsync()
    {
        var metrics = await Server.Http.GetStringAsync("/metrics");
        return metrics.Split('\n')
            .Where(line => line.StartsWith("telemetry_devices_authentication_failures_total{", StringComparison.Ordinal) && line.Contains("protocol=\"mqtt\""))
            .Sum(line => double.Parse(line[(line.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture));
    }
}
