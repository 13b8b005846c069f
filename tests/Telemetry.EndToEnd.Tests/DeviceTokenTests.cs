using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Grpc.Core;
using Grpc.Net.Client;
using MQTTnet;
using MQTTnet.Formatter;
using Telemetry.Protos;

namespace Telemetry.EndToEnd.Tests;

/// <summary>An admin issues a device a new token or revokes it; the old secret is refused at once over MQTT and HTTP.</summary>
public sealed class DeviceTokenTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private TelemetryServer Server => fixture.Server;

    [Fact]
    public async Task A_new_token_replaces_the_old_and_a_revoked_token_is_refused_until_the_next()
    {
        var first = await Server.ProvisionAsync("token-watch", "token-p1");

        using var rotated = await Server.Http.PostAsync("/api/devices/token-watch/token", null);
        Assert.Equal(HttpStatusCode.OK, rotated.StatusCode);
        var issued = await rotated.Content.ReadFromJsonAsync<JsonElement>();
        var second = issued.GetProperty("token").GetString()!;
        Assert.Equal("token-p1", issued.GetProperty("patientId").GetString());
        Assert.NotEqual(first, second);

        Assert.Equal(MqttClientConnectResultCode.BadUserNameOrPassword, await ConnectAsync(first));
        Assert.Equal(MqttClientConnectResultCode.Success, await ConnectAsync(second));
        Assert.Equal(HttpStatusCode.Unauthorized, await UploadAsync(first));
        Assert.Equal(HttpStatusCode.OK, await UploadAsync(second));

        using var revoked = await Server.Http.DeleteAsync("/api/devices/token-watch/token");
        Assert.Equal(HttpStatusCode.OK, revoked.StatusCode);
        Assert.Equal(JsonValueKind.String, (await revoked.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("revokedAt").ValueKind);
        Assert.Equal(MqttClientConnectResultCode.BadUserNameOrPassword, await ConnectAsync(second));
        Assert.Equal(HttpStatusCode.Unauthorized, await UploadAsync(second));

        using var reissued = await Server.Http.PostAsync("/api/devices/token-watch/token", null);
        var third = (await reissued.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("token").GetString()!;
        Assert.Equal(MqttClientConnectResultCode.Success, await ConnectAsync(third));
        Assert.Equal(JsonValueKind.Null, (await Server.Http.GetFromJsonAsync<JsonElement>("/api/devices/token-watch")).GetProperty("revokedAt").ValueKind);
    }

    [Fact]
    public async Task A_will_left_with_the_broker_is_not_stored_when_a_revocation_ends_the_connection()
    {
        // A token in the wrong hands connects with a will of readings on its vitals topic, for the broker to publish
        // once the connection ends without a DISCONNECT, as a revocation ends it.
        const string DeviceId = "token-will";
        var token = await Server.ProvisionAsync(DeviceId, "token-p-will");
        var at = Devices.RecentMinute();
        using var mqtt = await Devices.ConnectMqttAsync(Devices.MqttOptions(Server.MqttPort, DeviceId, DeviceId, token)
            .WithWillTopic($"devices/{DeviceId}/vitals")
            .WithWillPayload(Devices.JsonHeartRates(1, at, 180))
            .WithWillQualityOfServiceLevel(MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce)
            .Build());

        using var revoked = await Server.Http.DeleteAsync($"/api/devices/{DeviceId}/token");
        Assert.Equal(HttpStatusCode.OK, revoked.StatusCode);

        var metrics = await Eventually.ReadAsync(
            () => Server.Http.GetStringAsync("/metrics"),
            text => text.Contains("reason=\"will\"", StringComparison.Ordinal));
        Assert.Matches(@"telemetry_payloads_rejected_total\{[^}]*reason=""will""[^}]*\} [1-9]", metrics);
        Assert.Empty(await Server.RawHeartRatesAsync("token-p-will", at.AddMinutes(-1), at.AddMinutes(2)));

        // The device's maker finds why in its rejects.
        var rejects = System.Text.Json.JsonDocument.Parse(await Server.Http.GetStringAsync($"/api/devices/{DeviceId}/rejects")).RootElement;
        Assert.Contains(rejects.GetProperty("rejects").EnumerateArray(), reject => reject.GetProperty("reason").GetString()!.Contains("will message", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData(false, MqttClientDisconnectReason.AdministrativeAction, "rotated")]
    [InlineData(true, MqttClientDisconnectReason.NotAuthorized, "revoked")]
    public async Task Rotating_or_revoking_a_token_ends_the_devices_live_mqtt_session_and_grpc_stream(bool revoke, MqttClientDisconnectReason expected, string reason)
    {
        var deviceId = revoke ? "token-live-revoked" : "token-live-rotated";
        var token = await Server.ProvisionAsync(deviceId, "token-p3");
        using var mqtt = await Devices.ConnectMqttAsync(Server, deviceId, token);
        var disconnected = new TaskCompletionSource<MqttClientDisconnectedEventArgs>(TaskCreationOptions.RunContinuationsAsynchronously);
        mqtt.DisconnectedAsync += args =>
        {
            disconnected.TrySetResult(args);
            return Task.CompletedTask;
        };
        using var channel = GrpcChannel.ForAddress($"http://127.0.0.1:{Server.GrpcPort}");
        using var stream = new Ingest.IngestClient(channel).Stream(new Metadata { { "authorization", $"Bearer {token}" } });
        await stream.RequestStream.WriteAsync(Devices.ProtobufBatch(1, Devices.RecentMinute(), "heart_rate", "", 70));
        Assert.True(await stream.ResponseStream.MoveNext());
        Assert.Equal(AckStatus.Committed, stream.ResponseStream.Current.Status);

        using var changed = revoke
            ? await Server.Http.DeleteAsync($"/api/devices/{deviceId}/token")
            : await Server.Http.PostAsync($"/api/devices/{deviceId}/token", null);
        Assert.Equal(HttpStatusCode.OK, changed.StatusCode);

        var ended = await disconnected.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(ended.Reason == expected && ended.ReasonString?.Contains(reason, StringComparison.Ordinal) == true,
            $"MQTT ended with {ended.Reason} '{ended.ReasonString}' ({ended.Exception?.Message})\n{Server.Output}");
        var error = await Assert.ThrowsAsync<RpcException>(async () => await stream.ResponseStream.MoveNext()).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(error.StatusCode == StatusCode.Unauthenticated && error.Status.Detail.Contains("rotated or revoked", StringComparison.Ordinal),
            $"gRPC ended with {error.StatusCode} '{error.Status.Detail}'\n{Server.Output}");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Every_device_whose_token_is_rotated_hears_why_even_many_at_once(bool webSocket)
    {
        // The server's DISCONNECT must reach each device before its connection closes, however the connections' ends
        // interleave, over TCP and over WebSocket alike.
        const int count = 40;
        var devices = await Task.WhenAll(Enumerable.Range(0, count).Select(async i =>
        {
            var deviceId = webSocket ? $"token-many-ws-{i}" : $"token-many-{i}";
            var token = await Server.ProvisionAsync(deviceId, $"token-many-p{i}");
            var mqtt = webSocket
                ? await Devices.ConnectMqttAsync(new MqttClientOptionsBuilder()
                    .WithWebSocketServer(ws => ws.WithUri($"ws://127.0.0.1:{Server.HttpPort}/mqtt"))
                    .WithClientId(deviceId)
                    .WithCredentials(deviceId, token)
                    .WithProtocolVersion(MqttProtocolVersion.V500)
                    .WithCleanSession()
                    .Build())
                : await Devices.ConnectMqttAsync(Server, deviceId, token);
            var disconnected = new TaskCompletionSource<MqttClientDisconnectedEventArgs>(TaskCreationOptions.RunContinuationsAsynchronously);
            mqtt.DisconnectedAsync += args =>
            {
                disconnected.TrySetResult(args);
                return Task.CompletedTask;
            };
            return (DeviceId: deviceId, Mqtt: mqtt, Disconnected: disconnected);
        }));

        try
        {
            await Task.WhenAll(devices.Select(async device =>
            {
                using var rotated = await Server.Http.PostAsync($"/api/devices/{device.DeviceId}/token", null);
                Assert.Equal(HttpStatusCode.OK, rotated.StatusCode);
            }));

            var ended = await Task.WhenAll(devices.Select(device => device.Disconnected.Task.WaitAsync(TimeSpan.FromSeconds(10))));
            var unexplained = ended.Count(args => args.Reason != MqttClientDisconnectReason.AdministrativeAction || args.ReasonString?.Contains("rotated", StringComparison.Ordinal) != true);
            Assert.True(unexplained == 0, $"{unexplained} of {count} devices were disconnected without the reason: "
                + string.Join(", ", ended.Select(args => $"{args.Reason} '{args.ReasonString}'").Distinct()));
        }
        finally
        {
            foreach (var device in devices)
            {
                device.Mqtt.Dispose();
            }
        }
    }

    [Fact]
    public async Task Only_an_admin_may_rotate_or_revoke_and_an_unknown_device_is_not_found()
    {
        await Server.ProvisionAsync("token-watch-2", "token-p2");
        using var clinician = Server.ClientWith(await Server.MintTokenAsync("--role", "clinician", "--care-team", "token-ward"));

        Assert.Equal(HttpStatusCode.Forbidden, (await clinician.PostAsync("/api/devices/token-watch-2/token", null)).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await clinician.DeleteAsync("/api/devices/token-watch-2/token")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await Server.Http.PostAsync("/api/devices/token-nobody/token", null)).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await Server.Http.DeleteAsync("/api/devices/token-nobody/token")).StatusCode);

        // An id no device can have is answered as such, naming the shape an id takes, not as a device not found.
        foreach (var answer in new[]
        {
            await Server.Http.GetAsync("/api/devices/bad%20id"),
            await Server.Http.PostAsync("/api/devices/bad%20id/token", null),
            await Server.Http.DeleteAsync("/api/devices/bad%20id/token"),
            await Server.Http.GetAsync("/api/devices/bad%20id/rejects"),
        })
        {
            using (answer)
            {
                Assert.Equal(HttpStatusCode.BadRequest, answer.StatusCode);
                Assert.Contains("deviceId", await answer.Content.ReadAsStringAsync(), StringComparison.Ordinal);
            }
        }

        // A patient id is a FHIR id (the EMR's Patient id): '_' and ':' are a device id's, not a patient's.
        foreach (var patientId in new[] { "token_p3", "urn:p:3", new string('p', 65) })
        {
            using var provisioned = await Server.Http.PostAsJsonAsync("/api/devices", new { deviceId = "token-watch-3", patientId });
            Assert.Equal(HttpStatusCode.BadRequest, provisioned.StatusCode);
            Assert.Contains("FHIR id", await provisioned.Content.ReadAsStringAsync(), StringComparison.Ordinal);
            using var team = await Server.Http.PutAsJsonAsync("/api/care-teams/token-ward", new { patients = new[] { patientId } });
            Assert.Equal(HttpStatusCode.BadRequest, team.StatusCode);
            using var rules = await Server.Http.PutAsJsonAsync($"/api/patients/{patientId}/alert-rules", new { rules = Array.Empty<object>() });
            Assert.Equal(HttpStatusCode.BadRequest, rules.StatusCode);
            Assert.Contains("FHIR id", await rules.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }
    }

    private Task<MqttClientConnectResultCode> ConnectAsync(string token) =>
        Devices.TryConnectMqttAsync(Devices.MqttOptions(Server.MqttPort, "token-watch", "token-watch", token).Build());

    private async Task<HttpStatusCode> UploadAsync(string token)
    {
        using var client = Server.ClientWith(token);
        using var content = new StringContent(
            $$"""{"readings":[{"kind":"heart_rate","time":"{{DateTimeOffset.UtcNow.AddSeconds(-Random.Shared.Next(1, 3600)):O}}","value":70}]}""",
            System.Text.Encoding.UTF8, "application/json");
        using var response = await client.PostAsync("/api/devices/token-watch/readings", content);
        return response.StatusCode;
    }
}
