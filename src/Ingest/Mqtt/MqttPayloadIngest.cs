using System.Buffers;
using Microsoft.Extensions.Options;
using MQTTnet.Protocol;
using Telemetry.Core.Readings;
using Telemetry.Ingest.Codecs;
using Telemetry.Ingest.Pipeline;

namespace Telemetry.Ingest.Mqtt;

/// <summary>
/// One MQTT message's payload from a known device, whichever broker it came through: size limit, decoding,
/// validation, commit. Refusals are counted and kept in the device's reject log; the caller answers the sender.
/// </summary>
public sealed class MqttPayloadIngest(
    CommitPipeline pipeline,
    IngestInstruments instruments,
    DeviceRejectLog rejectLog,
    IOptions<IngestOptions> options,
    TimeProvider timeProvider)
{
    [ThreadStatic]
    private static ReadingBatchBuilder? _batchOfThread;

    public async Task<MqttPayloadAnswer> IngestAsync(DeviceIdentity device, ReadOnlySequence<byte> payload, CancellationToken cancellationToken)
    {
        var limit = options.Value.MaxMessageBytes;
        if (payload.Length > limit)
        {
            return Refuse(device, MqttPubAckReasonCode.QuotaExceeded, $"payload of {payload.Length} bytes exceeds the limit of {limit} bytes", "too_large");
        }

        var batch = _batchOfThread ??= new ReadingBatchBuilder(options.Value.ToLimits(), timeProvider);
        if (!PayloadDecoder.TryDecode(payload, batch, out _, out var error))
        {
            return Refuse(device, MqttPubAckReasonCode.PayloadFormatInvalid, error!, "malformed");
        }

        instruments.Rejected(MqttIngestEndpoint.Protocol, batch);
        var rejects = batch.DescribeRejects();
        if (rejects is not null)
        {
            rejectLog.Record(device.DeviceId, MqttIngestEndpoint.Protocol, rejects);
        }

        if (batch.Count == 0 && batch.Quarantined.Count == 0)
        {
            return rejects is null
                ? Refuse(device, MqttPubAckReasonCode.PayloadFormatInvalid, "no readings", "empty")
                : Refused(MqttPubAckReasonCode.PayloadFormatInvalid, rejects, "all_rejected");
        }

        var deviceBatch = batch.ToBatch(device.DeviceId, device.PatientId);
        CommitResult result;
        try
        {
            result = await pipeline.CommitAsync(deviceBatch, cancellationToken);
        }
        catch (StoreUnavailableException exception)
        {
            instruments.PayloadRejected(MqttIngestEndpoint.Protocol, "store_unavailable");
            return new MqttPayloadAnswer(MqttPayloadVerdict.StoreUnavailable, MqttPubAckReasonCode.ImplementationSpecificError, exception.Message);
        }

        instruments.Accepted(MqttIngestEndpoint.Protocol, result.Stored);
        instruments.Duplicate(MqttIngestEndpoint.Protocol, result.Duplicates);
        instruments.Quarantined(MqttIngestEndpoint.Protocol, deviceBatch.Quarantined.Length);
        if (deviceBatch.Readings.IsEmpty && result.Outcome != CommitOutcome.Duplicate)
        {
            // Only quarantined readings: stored apart, but nothing the sender should count as accepted.
            return Refused(MqttPubAckReasonCode.PayloadFormatInvalid, rejects!, "all_rejected");
        }

        return result.Outcome == CommitOutcome.Duplicate
            ? new MqttPayloadAnswer(MqttPayloadVerdict.Stored, MqttPubAckReasonCode.Success, $"batch {deviceBatch.Sequence} was already committed; not stored again")
            : new MqttPayloadAnswer(MqttPayloadVerdict.Stored, MqttPubAckReasonCode.Success, result.Describe(rejects));
    }

    /// <summary>A refusal counted and recorded in the device's reject log.</summary>
    public MqttPayloadAnswer Refuse(DeviceIdentity device, MqttPubAckReasonCode code, string reason, string metricReason)
    {
        rejectLog.Record(device.DeviceId, MqttIngestEndpoint.Protocol, reason);
        return Refused(code, reason, metricReason);
    }

    /// <summary>A refusal counted; its readings' rejects are already in the device's reject log.</summary>
    private MqttPayloadAnswer Refused(MqttPubAckReasonCode code, string reason, string metricReason)
    {
        instruments.PayloadRejected(MqttIngestEndpoint.Protocol, metricReason);
        return new MqttPayloadAnswer(MqttPayloadVerdict.Refused, code, reason);
    }
}

/// <summary>What became of a message: stored (or already stored), refused for good, or not stored because the store is away.</summary>
public enum MqttPayloadVerdict
{
    Stored,
    Refused,
    StoreUnavailable,
}

/// <summary>The verdict on a message with the MQTT 5 reason code and reason string (none for a plain success) that tell its sender.</summary>
public readonly record struct MqttPayloadAnswer(MqttPayloadVerdict Verdict, MqttPubAckReasonCode Code, string? Reason);
