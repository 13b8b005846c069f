using Microsoft.Extensions.Logging;
using MQTTnet.Protocol;
using Telemetry.Ingest.Grpc;
using Telemetry.Ingest.Mqtt;

namespace Telemetry.Ingest;

/// <summary>
/// A device's live connections across the front doors. A device whose token is rotated or revoked must not keep
/// writing on a connection it opened with the old credentials, so its MQTT session and gRPC stream are ended at once;
/// the device reconnects with what it holds now (and a revoked one is refused).
/// </summary>
public sealed partial class DeviceSessions(MqttIngestEndpoint mqtt, GrpcStreamRegistry grpc, ILogger<DeviceSessions> logger)
{
    /// <summary>
    /// Ends every live connection of the device on this server; returns how many there were. Never throws: the
    /// credentials have changed already, and the caller must still hand out a new token.
    /// </summary>
    public async Task<int> EndAsync(string deviceId, bool revoked)
    {
        var (code, reason) = revoked
            ? (MqttDisconnectReasonCode.NotAuthorized, "the device's token was revoked")
            : (MqttDisconnectReasonCode.AdministrativeAction, "the device's token was rotated; connect again with the new token");
        var ended = grpc.Close(deviceId) ? 1 : 0;
        try
        {
            ended += await mqtt.DisconnectAsync(deviceId, code, reason) ? 1 : 0;
        }
        catch (Exception exception)
        {
            // The old connection may stay open until it drops; it cannot sign in again with the old token.
            LogEndFailed(logger, exception, deviceId);
        }

        return ended;
    }

    [LoggerMessage(EventId = 1301, Level = LogLevel.Warning, Message = "Ending device {DeviceId}'s MQTT session after its token changed failed")]
    private static partial void LogEndFailed(ILogger logger, Exception exception, string deviceId);
}
