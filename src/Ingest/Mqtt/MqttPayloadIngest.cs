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
    SenMlResendClock resends,
    IOptions<IngestOptions> options,
    TimeProvider timeProvider)
{
    [ThreadStatic]
    private static ReadingBatchBuilder? _batchOfThread;

    /// <summary>
    /// Takes in a payload that came at <paramref name="readAtMs"/> and waits for its commit; the answer never faults for
    /// a store that is away. Times relative to arrival count from <paramref name="readAtMs"/>, so a payload tried again
    /// (its store away) is read as it was the first time, and a commit that failed after storing it makes no second copy.
    /// </summary>
    public async Task<MqttPayloadAnswer> IngestAsync(DeviceIdentity device, ReadOnlySequence<byte> payload, long readAtMs, CancellationToken cancellationToken)
    {
        if (!TrySubmit(device, payload, resendable: false, sentAgain: false, packetId: 0, cancellationToken, out var refusal, out var pending, readAtMs))
        {
            return refusal;
        }

        try
        {
            return Committed(pending, await pending.Commit);
        }
        catch (StoreUnavailableException exception)
        {
            return Unavailable(exception);
        }
    }

    /// <summary>
    /// Checks, decodes and validates a payload and hands its readings to the commit pipeline (<paramref name="pending"/>),
    /// or refuses it (<paramref name="refusal"/>, false). Synchronous, so that a front door has one asynchronous step per
    /// message, the wait for its commit; then <see cref="Committed"/> or, when the commit throws
    /// <see cref="StoreUnavailableException"/>, <see cref="Unavailable"/> gives the answer. A publish the device may send
    /// again until acknowledged (<paramref name="resendable"/>: QoS 1, under packet identifier <paramref name="packetId"/>)
    /// and marks as sent again (<paramref name="sentAgain"/>: the DUP flag), a SenML payload with relative times, is read
    /// as of its first arrival (see <see cref="SenMlResendClock"/>); one given <paramref name="readAtMs"/> as of then.
    /// </summary>
    public bool TrySubmit(
        DeviceIdentity device, ReadOnlySequence<byte> payload, bool resendable, bool sentAgain, ushort packetId, CancellationToken cancellationToken, out MqttPayloadAnswer refusal, out PendingPayload pending, long? readAtMs = null)
    {
        pending = default;
        var limit = options.Value.MaxMessageBytes;
        if (payload.Length > limit)
        {
            // 0x99, as every refusal of the message itself: sent again as it is, it would be refused again (0x97 is the
            // rate limit's, whose messages are to be sent again, more slowly).
            refusal = Refuse(device, MqttPubAckReasonCode.PayloadFormatInvalid, $"payload of {payload.Length} bytes exceeds the limit of {limit} bytes; split it", "too_large");
            return false;
        }

        var batch = _batchOfThread ??= new ReadingBatchBuilder(options.Value.ToLimits(), timeProvider);
        var senMl = resendable && PayloadDecoder.Detect(payload) == PayloadFormat.SenMl;
        var firstReadAt = readAtMs ?? (senMl && sentAgain ? resends.FirstReadAt(device.DeviceId, payload, packetId) : null);
        if (!PayloadDecoder.TryDecode(payload, batch, firstReadAt, out _, out var error))
        {
            refusal = Refuse(device, MqttPubAckReasonCode.PayloadFormatInvalid, error!, "malformed");
            return false;
        }

        instruments.Rejected(MqttIngestEndpoint.Protocol, batch);
        var rejects = batch.DescribeRejects();
        if (rejects is not null)
        {
            rejectLog.Record(device.DeviceId, MqttIngestEndpoint.Protocol, rejects);
        }

        if (batch.Count == 0 && batch.Quarantined.Count == 0)
        {
            refusal = rejects is null
                ? Refuse(device, MqttPubAckReasonCode.PayloadFormatInvalid, "no readings", "empty")
                : Refused(MqttPubAckReasonCode.PayloadFormatInvalid, rejects, "all_rejected");
            return false;
        }

        if (senMl && firstReadAt is null && batch.UsedRelativeTime)
        {
            resends.Remember(device.DeviceId, payload, packetId, batch.NowMs);
        }

        var deviceBatch = batch.ToBatch(device.DeviceId, device.PatientId);
        pending = new PendingPayload(deviceBatch, rejects, pipeline.CommitAsync(deviceBatch, cancellationToken));
        refusal = default;
        return true;
    }

    /// <summary>The answer to a submitted payload once its commit completed.</summary>
    public MqttPayloadAnswer Committed(in PendingPayload pending, CommitResult result)
    {
        var deviceBatch = pending.Batch;
        instruments.Counted(MqttIngestEndpoint.Protocol, result);
        rejectLog.RecordConflicts(deviceBatch.DeviceId, MqttIngestEndpoint.Protocol, result.Conflicts);

        if (deviceBatch.Readings.IsEmpty || result.AllConflicting)
        {
            // Only quarantined readings (stored apart; also when sent again, its batch number already committed, as the
            // first answer said), or only readings conflicting with those stored: nothing the sender should count as
            // accepted, and nothing to send again.
            return Refused(MqttPubAckReasonCode.PayloadFormatInvalid, result.Describe(pending.Rejects)!, "all_rejected");
        }

        return result.Outcome == CommitOutcome.Duplicate
            ? new MqttPayloadAnswer(MqttPayloadVerdict.Stored, MqttPubAckReasonCode.Success, CommitResult.DescribeDuplicateBatch(deviceBatch.Sequence, pending.Rejects))
            : new MqttPayloadAnswer(MqttPayloadVerdict.Stored, MqttPubAckReasonCode.Success, result.Describe(pending.Rejects));
    }

    /// <summary>The answer to a submitted payload whose commit failed: not stored, to be sent again.</summary>
    public MqttPayloadAnswer Unavailable(StoreUnavailableException exception)
    {
        instruments.PayloadRejected(MqttIngestEndpoint.Protocol, "store_unavailable");
        return new MqttPayloadAnswer(MqttPayloadVerdict.StoreUnavailable, MqttPubAckReasonCode.ImplementationSpecificError, exception.Message);
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

/// <summary>A payload's readings handed to the commit pipeline, and the commit under way; awaited once.</summary>
public readonly record struct PendingPayload(DeviceBatch Batch, string? Rejects, ValueTask<CommitResult> Commit);
