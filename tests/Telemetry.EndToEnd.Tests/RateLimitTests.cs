using System.Net;
using System.Security.Cryptography;
using Grpc.Core;
using MQTTnet;

namespace Telemetry.EndToEnd.Tests;

/// <summary>Guessing tokens gets an address locked out; a caller over its pace gets 429. Both are counted.</summary>
public sealed class RateLimitTests
{
    private const string Guesser = "203.0.113.7";

    [Fact]
    public async Task An_address_that_keeps_presenting_bad_tokens_is_refused_even_a_good_one_for_a_while()
    {
        // The server sits behind a proxy on loopback: the guesser is the address the proxy forwards, not the proxy.
        await using var server = await TelemetryServer.StartNewAsync(new Dictionary<string, string>
        {
            ["Telemetry__Auth__RateLimits__FailedSignInsPerMinute"] = "3",
            ["Telemetry__Auth__RateLimits__LockoutSeconds"] = "120",
            ["Telemetry__Server__TrustedProxies__0"] = "127.0.0.1",
        });
        using var guessing = server.ClientWith(Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32)));
        guessing.DefaultRequestHeaders.Add("X-Forwarded-For", Guesser);
        using var anonymous = server.ClientWith(null);
        using var admin = server.ClientWith(server.AdminToken);
        admin.DefaultRequestHeaders.Add("X-Forwarded-For", Guesser);

        for (var i = 0; i < 4; i++)
        {
            Assert.Equal(HttpStatusCode.Unauthorized, (await guessing.GetAsync("/api/alerts")).StatusCode);
        }

        using var locked = await admin.GetAsync("/api/alerts");
        using var lockedFhir = await admin.GetAsync("/fhir/Observation?patient=p-1");

        Assert.Equal(HttpStatusCode.TooManyRequests, locked.StatusCode);
        Assert.Equal("application/problem+json", locked.Content.Headers.ContentType?.MediaType);
        Assert.InRange(locked.Headers.RetryAfter?.Delta ?? TimeSpan.Zero, TimeSpan.FromSeconds(100), TimeSpan.FromSeconds(120));
        Assert.Equal(HttpStatusCode.TooManyRequests, lockedFhir.StatusCode);
        Assert.Contains("\"throttled\"", await lockedFhir.Content.ReadAsStringAsync());

        // A device behind the same address (phones share their carrier's) still uploads: its token is a device's.
        var deviceToken = await server.ProvisionAsync("rl-watch", "rl-patient");
        using var device = server.ClientWith(deviceToken);
        device.DefaultRequestHeaders.Add("X-Forwarded-For", Guesser);
        var at = Devices.RecentMinute().ToString("O", System.Globalization.CultureInfo.InvariantCulture);
        using var upload = await device.PostAsync("/api/devices/rl-watch/readings", new StringContent(
            $$"""{"readings":[{"kind":"heart_rate","time":"{{at}}","value":72,"unit":"/min"}]}""", System.Text.Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, upload.StatusCode);

        // Other clients behind the same proxy are not locked out.
        using var neighbour = server.ClientWith(server.AdminToken);
        neighbour.DefaultRequestHeaders.Add("X-Forwarded-For", "203.0.113.8");
        Assert.Equal(HttpStatusCode.OK, (await neighbour.GetAsync("/api/alerts")).StatusCode);

        // Without a token there is nothing to guess: such requests are still simply unauthorised.
        Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync("/api/alerts")).StatusCode);
        Assert.True(Counted(await anonymous.GetStringAsync("/metrics"), "sign_in"));
    }

    [Fact]
    public async Task An_address_whose_device_tokens_keep_being_refused_has_its_device_sign_ins_held_on_every_protocol()
    {
        await using var server = await TelemetryServer.StartNewAsync(new Dictionary<string, string>
        {
            ["Telemetry__Ingest__FailedDeviceSignInsPerMinute"] = "3",
            ["Telemetry__Ingest__DeviceSignInLockout"] = "00:02:00",
        });
        var token = await server.ProvisionAsync("rl-held", "rl-held-patient");
        var wrong = "rl-held." + new string('0', 64);

        // A phone behind the same address has signed in before.
        var known = await server.ProvisionAsync("rl-known", "rl-known-patient");
        Assert.Equal(MqttClientConnectResultCode.Success, await ConnectAsync(server, known, "rl-known"));

        // Refused over MQTT and uploads alike; the fourth refusal in a minute holds the address.
        Assert.Equal(MqttClientConnectResultCode.BadUserNameOrPassword, await ConnectAsync(server, wrong));
        Assert.Equal(MqttClientConnectResultCode.BadUserNameOrPassword, await ConnectAsync(server, wrong));
        Assert.Equal(HttpStatusCode.Unauthorized, (await UploadAsync(server, wrong)).StatusCode);
        Assert.Equal(MqttClientConnectResultCode.BadUserNameOrPassword, await ConnectAsync(server, wrong));

        // Held now, the right token too, each protocol with its own answer and a time to come back.
        Assert.Equal(MqttClientConnectResultCode.ConnectionRateExceeded, await ConnectAsync(server, token));
        Assert.Equal(MqttClientConnectResultCode.ServerUnavailable, await Devices.TryConnectMqttAsync(
            Devices.MqttOptions(server.MqttPort, "rl-held", "rl-held", token, MQTTnet.Formatter.MqttProtocolVersion.V311).WithCleanSession().Build()));
        using var upload = await UploadAsync(server, token);
        Assert.Equal(HttpStatusCode.TooManyRequests, upload.StatusCode);
        Assert.Equal("application/problem+json", upload.Content.Headers.ContentType?.MediaType);
        Assert.InRange(upload.Headers.RetryAfter?.Delta ?? TimeSpan.Zero, TimeSpan.FromSeconds(100), TimeSpan.FromSeconds(120));
        using var channel = Grpc.Net.Client.GrpcChannel.ForAddress($"http://127.0.0.1:{server.GrpcPort}");
        using (var call = new Telemetry.Protos.Ingest.IngestClient(channel).Stream(new Metadata { { "authorization", "Bearer " + token } }))
        {
            await call.RequestStream.WriteAsync(Devices.ProtobufBatch(1, Devices.RecentMinute(), "heart_rate", "", 70));
            var error = await Assert.ThrowsAsync<RpcException>(async () => await call.ResponseStream.MoveNext());
            Assert.Equal(StatusCode.ResourceExhausted, error.StatusCode);
        }

        // People's requests from the same address are not held, and the held sign-ins are counted.
        Assert.Equal(HttpStatusCode.OK, (await server.Http.GetAsync("/api/devices/rl-held")).StatusCode);
        var metrics = await server.Http.GetStringAsync("/metrics");
        Assert.Matches(@"telemetry_devices_sign_ins_held_total\{[^}]*protocol=""mqtt""[^}]*\} 2\b", metrics);
        Assert.Matches(@"telemetry_devices_sign_ins_held_total\{[^}]*protocol=""http""[^}]*\} 1\b", metrics);
        Assert.Matches(@"telemetry_devices_sign_ins_held_total\{[^}]*protocol=""grpc""[^}]*\} 1\b", metrics);

        // The device that signed in before still does, from the held address; a wrong token for it is held.
        Assert.Equal(MqttClientConnectResultCode.Success, await ConnectAsync(server, known, "rl-known"));
        Assert.Equal(MqttClientConnectResultCode.ConnectionRateExceeded, await ConnectAsync(server, "rl-known." + new string('0', 64), "rl-known"));
        Assert.Equal(MqttClientConnectResultCode.Success, await ConnectAsync(server, known, "rl-known"));
    }

    private static Task<MqttClientConnectResultCode> ConnectAsync(TelemetryServer server, string token, string deviceId = "rl-held") =>
        Devices.TryConnectMqttAsync(Devices.MqttOptions(server.MqttPort, deviceId, deviceId, token).WithCleanSession().Build());

    private static async Task<HttpResponseMessage> UploadAsync(TelemetryServer server, string token)
    {
        using var device = server.ClientWith(token);
        var at = Devices.RecentMinute().ToString("O", System.Globalization.CultureInfo.InvariantCulture);
        return await device.PostAsync("/api/devices/rl-held/readings", new StringContent(
            $$"""{"readings":[{"kind":"heart_rate","time":"{{at}}","value":72,"unit":"/min"}]}""", System.Text.Encoding.UTF8, "application/json"));
    }

    [Fact]
    public async Task A_caller_over_its_pace_gets_429_and_others_are_not_held_back()
    {
        await using var server = await TelemetryServer.StartNewAsync(new Dictionary<string, string>
        {
            ["Telemetry__Auth__RateLimits__RequestsPerSecond"] = "1",
            ["Telemetry__Auth__RateLimits__Burst"] = "3",
            ["Telemetry__Auth__RateLimits__FailedSignInsPerMinute"] = "3",
        });
        using var clinician = server.ClientWith(await server.MintTokenAsync("--role", "clinician", "--sub", "dr-fast"));

        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 10; i++)
        {
            using var response = await server.Http.GetAsync("/api/alerts");
            statuses.Add(response.StatusCode);
            if (response.StatusCode == HttpStatusCode.TooManyRequests)
            {
                Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
                Assert.NotNull(response.Headers.RetryAfter);
            }
        }

        Assert.Contains(HttpStatusCode.OK, statuses);
        Assert.Contains(HttpStatusCode.TooManyRequests, statuses);
        Assert.Equal(HttpStatusCode.OK, (await clinician.GetAsync("/api/alerts")).StatusCode);
        Assert.True(Counted(await server.Http.GetStringAsync("/metrics"), "rate"));

        // With no trusted proxy, a client cannot claim another address: the guesser's lockout is its own.
        using var guessing = server.ClientWith(Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32)));
        guessing.DefaultRequestHeaders.Add("X-Forwarded-For", Guesser);
        for (var i = 0; i < 4; i++)
        {
            (await guessing.GetAsync("/api/alerts")).Dispose();
        }

        using var claimingAnother = server.ClientWith(await server.MintTokenAsync("--role", "clinician", "--sub", "dr-slow"));
        claimingAnother.DefaultRequestHeaders.Add("X-Forwarded-For", "203.0.113.8");
        Assert.Equal(HttpStatusCode.TooManyRequests, (await claimingAnother.GetAsync("/api/alerts")).StatusCode);
    }

    private static bool Counted(string metrics, string reason) =>
        metrics.Split('\n').Any(line => line.StartsWith("telemetry_requests_throttled_total{", StringComparison.Ordinal)
            && line.Contains($"reason=\"{reason}\"", StringComparison.Ordinal));
}
