using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Grpc.Core;
using Grpc.Net.Client;
using MQTTnet;
using MQTTnet.Formatter;
using Telemetry.Protos;

namespace Telemetry.EndToEnd.Tests;

/// <summary>
/// No secret is ever written down: a server logging everything at Trace goes through a whole working day (devices
/// over MQTT, gRPC and HTTP, people with tokens, token rotation and revocation, wrong passwords, tokens pasted into the
/// wrong field, FHIR, audit), and then neither its output nor any file it wrote holds any secret used.
/// </summary>
public sealed class SecretLogTests
{
    private readonly List<string> _secrets = [];

    [Fact]
    public async Task A_full_run_logged_at_trace_holds_none_of_the_secrets_it_used()
    {
        var keyPassword = Remember(Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16)));
        using var certificates = new TestCertificates(Path.Combine(Path.GetTempPath(), "telemetry-secrets-" + Guid.NewGuid().ToString("N")), keyPassword);
        await using var server = await TelemetryServer.StartNewAsync(new Dictionary<string, string>
        {
            ["Logging__LogLevel__Default"] = "Trace",
            ["Logging__LogLevel__Microsoft"] = "Trace",
            ["Logging__LogLevel__Orleans"] = "Trace",
            ["Logging__LogLevel__Microsoft.AspNetCore"] = "Trace",
            ["Logging__LogLevel__MQTTnet"] = "Trace",
            ["Telemetry__Server__Tls__CertificatePath"] = certificates.ServerCertificatePath,
            ["Telemetry__Server__Tls__KeyPath"] = certificates.ServerKeyPath,
            ["Telemetry__Server__Tls__Password"] = keyPassword,
            ["Telemetry__Server__Tls__DeviceCertificateAuthorityPath"] = certificates.AuthorityPath,
        });
        Remember(server.AdminToken);
        var start = Devices.RecentMinute();

        // Devices, over every front door, with right and wrong credentials.
        var watch = Remember(await server.ProvisionAsync("secret-watch", "p-secret-1"));
        var phone = Remember(await server.ProvisionAsync("secret-phone", "p-secret-1"));
        using (var mqtt = await Devices.ConnectMqttAsync(server, "secret-watch", watch))
        {
            await Devices.PublishAsync(mqtt, "devices/secret-watch/vitals", Devices.JsonHeartRates(1, start, 70, 71));
        }

        var nearMiss = Remember(watch[..^6] + (watch.EndsWith("abcdef", StringComparison.Ordinal) ? "012345" : "abcdef"));
        await RefusedMqttAsync(server, "secret-watch", "secret-watch", nearMiss);
        await RefusedMqttAsync(server, "secret-watch", watch, "x");
        await RefusedMqttAsync(server, watch, watch, watch);

        // The same over MQTT TLS (the server's key encrypted with a password), by token and by certificate.
        MqttClientOptions OverTls(string clientId, string? user, string? password, X509Certificate2? certificate = null) =>
            certificates.MqttOverTls(server.MqttTlsPort, clientId, user, password, certificate);
        using (var certificate = certificates.Device("secret-watch"))
        {
            Assert.Equal(MqttClientConnectResultCode.Success, await Devices.TryConnectMqttAsync(OverTls("secret-watch", "secret-watch", watch)));
            Assert.Equal(MqttClientConnectResultCode.Success, await Devices.TryConnectMqttAsync(OverTls("secret-watch", null, null, certificate)));
            Assert.NotEqual(MqttClientConnectResultCode.Success, await Devices.TryConnectMqttAsync(OverTls("secret-watch", watch, nearMiss)));
            Assert.NotEqual(MqttClientConnectResultCode.Success, await Devices.TryConnectMqttAsync(OverTls("secret-watch", "secret-watch", nearMiss, certificate)));
        }

        using (var channel = GrpcChannel.ForAddress($"http://127.0.0.1:{server.GrpcPort}"))
        {
            var client = new Ingest.IngestClient(channel);
            using (var call = client.Stream(new Metadata { { "authorization", $"Bearer {phone}" } }))
            {
                await call.RequestStream.WriteAsync(Devices.ProtobufBatch(1, start, "heart_rate", "", 72));
                await call.RequestStream.CompleteAsync();
                Assert.True(await call.ResponseStream.MoveNext());
            }

            using var refused = client.Stream(new Metadata { { "authorization", $"Bearer {nearMiss}" } });
            await Assert.ThrowsAsync<RpcException>(async () => await refused.ResponseStream.MoveNext());
        }

        Assert.Equal(HttpStatusCode.OK, await UploadAsync(server, phone, start));
        Assert.Equal(HttpStatusCode.Unauthorized, await UploadAsync(server, nearMiss, start));

        using (var rotated = await server.Http.PostAsync("/api/devices/secret-watch/token", null))
        {
            var body = System.Text.Json.JsonDocument.Parse(await rotated.Content.ReadAsStringAsync()).RootElement;
            var renewed = Remember(body.GetProperty("token").GetString()!);
            using var mqtt = await Devices.ConnectMqttAsync(server, "secret-watch", renewed);
        }

        (await server.Http.DeleteAsync("/api/devices/secret-phone/token")).Dispose();
        Assert.Equal(HttpStatusCode.Unauthorized, await UploadAsync(server, phone, start));

        // People, with their tokens, someone else's, forged ones, and the admin token guessed.
        var clinician = Remember(await server.MintTokenAsync("--role", "clinician", "--sub", "dr-secret", "--care-team", "ward-s", "--scope", "user/Observation.rs"));
        var patient = Remember(await server.MintTokenAsync("--role", "patient", "--patient", "p-secret-1", "--scope", "patient/Observation.rs"));
        var forged = Remember(clinician[..clinician.LastIndexOf('.')] + "." + Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)).TrimEnd('=').Replace('+', '-').Replace('/', '_'));
        var guessedAdmin = Remember(Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16)));
        (await server.Http.PutAsync("/api/care-teams/ward-s", new StringContent("""{"patients":["p-secret-1"]}""", Encoding.UTF8, "application/json"))).Dispose();
        foreach (var token in new[] { clinician, patient, forged, guessedAdmin, server.AdminToken })
        {
            using var person = server.ClientWith(token);
            (await person.GetAsync($"/api/patients/p-secret-1/trends?kind=heart_rate&from={Uri.EscapeDataString(start.ToString("O"))}&to={Uri.EscapeDataString(start.AddMinutes(1).ToString("O"))}")).Dispose();
            (await person.GetAsync("/fhir/Observation?patient=p-secret-1&code=8867-4")).Dispose();
            (await person.GetAsync("/api/alerts")).Dispose();
        }

        (await server.Http.GetAsync("/api/audit?patientId=p-secret-1")).Dispose();
        (await server.Http.GetAsync("/metrics")).Dispose();

        // The signing key of those tokens is a secret too.
        Remember(File.ReadAllText(Path.Combine(server.DataDirectory, "development-signing-key")).Trim());

        await Task.Delay(TimeSpan.FromSeconds(1));
        await server.KillAsync();
        var written = new Dictionary<string, string> { ["the server's output"] = server.Output };
        foreach (var file in Directory.EnumerateFiles(server.DataDirectory, "*", SearchOption.AllDirectories))
        {
            if (Path.GetFileName(file) is not ("development-signing-key" or "admin-token"))
            {
                written[Path.GetRelativePath(server.DataDirectory, file)] = Encoding.Latin1.GetString(await File.ReadAllBytesAsync(file));
            }
        }

        Assert.True(server.Output.Length > 100_000, "the run logged too little to show anything");
        var leaks = (from secret in _secrets.Distinct()
                     from place in written
                     where place.Value.Contains(secret, StringComparison.Ordinal)
                     select $"{place.Key}: {LineAround(place.Value, secret)}").ToList();
        Assert.True(leaks.Count == 0, string.Join('\n', leaks));
    }

    /// <summary>Keeps a secret to look for, and the parts that are secret on their own (a token's secret, a JWT's signature).</summary>
    private string Remember(string secret)
    {
        _secrets.Add(secret);
        var afterDot = secret.LastIndexOf('.');
        if (afterDot > 0 && secret.Length - afterDot > 16)
        {
            _secrets.Add(secret[(afterDot + 1)..]);
        }

        return secret;
    }

    /// <summary>The line holding <paramref name="secret"/>, with the secret blanked out, to show where it leaked.</summary>
    private static string LineAround(string text, string secret)
    {
        var at = text.IndexOf(secret, StringComparison.Ordinal);
        var from = Math.Max(text.LastIndexOf('\n', at) + 1, at - 300);
        var to = text.IndexOf('\n', at) is var end and >= 0 ? Math.Min(end, at + secret.Length + 300) : text.Length;
        var previous = text.LastIndexOf('\n', Math.Max(from - 2, 0)) + 1;
        return text[previous..to].Replace(secret, "[SECRET]", StringComparison.Ordinal);
    }

    private static async Task RefusedMqttAsync(TelemetryServer server, string clientId, string user, string password) =>
        Assert.NotEqual(MqttClientConnectResultCode.Success, await Devices.TryConnectMqttAsync(Devices.MqttOptions(server.MqttPort, clientId, user, password).Build()));

    private static async Task<HttpStatusCode> UploadAsync(TelemetryServer server, string token, DateTimeOffset start)
    {
        using var client = server.ClientWith(token);
        using var content = new StringContent(
            $$"""{"readings":[{"kind":"heart_rate","time":"{{start.AddSeconds(30):O}}","value":73}]}""", Encoding.UTF8, "application/json");
        using var response = await client.PostAsync("/api/devices/secret-phone/readings", content);
        return response.StatusCode;
    }
}
