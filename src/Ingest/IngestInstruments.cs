using System.Diagnostics;
using System.Diagnostics.Metrics;
using Telemetry.Ingest.Codecs;

namespace Telemetry.Ingest;

/// <summary>The ingest path's metrics: one meter, instrument names as constants.</summary>
public sealed class IngestInstruments
{
    public const string MeterName = "Telemetry";
    public const string ReadingsAccepted = "telemetry.readings.accepted";
    public const string ReadingsRejected = "telemetry.readings.rejected";
    public const string ReadingsDuplicate = "telemetry.readings.duplicate";
    public const string ReadingsQuarantined = "telemetry.readings.quarantined";
    public const string PayloadsRejected = "telemetry.payloads.rejected";
    public const string BatchesCommitted = "telemetry.batches.committed";
    public const string CommitDuration = "telemetry.commit.duration";
    public const string CommitFailures = "telemetry.commit.failures";
    public const string AcksSent = "telemetry.acks.sent";
    public const string AlertsPublished = "telemetry.alerts.published";
    public const string AlertsGivenUp = "telemetry.alerts.given_up";
    public const string DevicesConnected = "telemetry.devices.connected";
    public const string AuthenticationFailures = "telemetry.devices.authentication_failures";
    public const string SignInsHeld = "telemetry.devices.sign_ins_held";
    public const string GrainCallFailures = "telemetry.grain_calls.failures";
    public const string CommitQueued = "telemetry.commit.queued";
    public const string CommitWaitingForRoom = "telemetry.commit.waiting_for_room";
    public const string CommitOldestWait = "telemetry.commit.oldest_wait";
    public const string CommitWait = "telemetry.commit.wait";
    public const string GrainCallReadings = "telemetry.grain_calls.readings";
    public const string GrainCallsRepaired = "telemetry.grain_calls.repaired";

    private readonly Meter _meter;

    private readonly Counter<long> _accepted;
    private readonly Counter<long> _rejected;
    private readonly Counter<long> _duplicate;
    private readonly Counter<long> _quarantined;
    private readonly Counter<long> _payloadsRejected;
    private readonly Counter<long> _batchesCommitted;
    private readonly Histogram<double> _commitDuration;
    private readonly Histogram<double> _commitWait;
    private readonly Counter<long> _commitFailures;
    private readonly Counter<long> _acks;
    private readonly Counter<long> _alertsPublished;
    private readonly Counter<long> _alertsGivenUp;
    private readonly UpDownCounter<long> _connected;
    private readonly Counter<long> _authenticationFailures;
    private readonly Counter<long> _signInsHeld;
    private readonly Counter<long> _grainCallFailures;
    private readonly Counter<long> _grainCallsRepaired;

    public IngestInstruments(IMeterFactory meterFactory)
    {
        var meter = _meter = meterFactory.Create(MeterName);
        _accepted = meter.CreateCounter<long>(ReadingsAccepted, "{reading}", "Readings validated and committed.");
        _rejected = meter.CreateCounter<long>(ReadingsRejected, "{reading}", "Readings refused, by reason.");
        _duplicate = meter.CreateCounter<long>(ReadingsDuplicate, "{reading}", "Readings not stored again: in resent batches, or the same device, vital and time as a stored reading.");
        _quarantined = meter.CreateCounter<long>(ReadingsQuarantined, "{reading}", "Implausible readings stored apart in quarantine, never in the patient's series.");
        _payloadsRejected = meter.CreateCounter<long>(PayloadsRejected, "{payload}", "Messages refused whole (malformed, too large, wrong topic).");
        _batchesCommitted = meter.CreateCounter<long>(BatchesCommitted, "{batch}", "Device batches durably committed.");
        // Seconds, so buckets from a millisecond to ten seconds (the default buckets are sized for milliseconds).
        _commitDuration = meter.CreateHistogram(CommitDuration, "s", "Time to commit one group of batches to the raw store.", tags: null,
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] });
        _commitWait = meter.CreateHistogram(CommitWait, "s", "Time from a device batch's hand-over to the commit pipeline to its commit's answer (waiting for room, in the queue, and the commit), by outcome: the server's part of an ack's latency.", tags: null,
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] });
        _commitFailures = meter.CreateCounter<long>(CommitFailures, "{commit}", "Group commits the raw store refused.");
        _acks = meter.CreateCounter<long>(AcksSent, "{ack}", "Acknowledgements sent to devices after commit.");
        _alertsPublished = meter.CreateCounter<long>(AlertsPublished, "{event}", "Alert events published, by channel (mqtt, sse, webhook).");
        _alertsGivenUp = meter.CreateCounter<long>(AlertsGivenUp, "{event}", "Alert events a channel gave up delivering (a webhook's receiver refused them, or failed until they were too old), by channel.");
        _connected = meter.CreateUpDownCounter<long>(DevicesConnected, "{device}", "Devices connected now.");
        _authenticationFailures = meter.CreateCounter<long>(AuthenticationFailures, "{attempt}", "Device connections refused for bad credentials.");
        _signInsHeld = meter.CreateCounter<long>(SignInsHeld, "{attempt}", "Device sign-ins refused unread: their address had too many tokens refused in the last minute.");
        _grainCallFailures = meter.CreateCounter<long>(GrainCallFailures, "{call}", "Patient grain calls that failed after commit.");
        _grainCallsRepaired = meter.CreateCounter<long>(GrainCallsRepaired, "{call}", "Patient grain calls that recomputed, from the raw store, windows a crash or a failed call may have kept from the grain.");
    }

    private void Accepted(string protocol, int count)
    {
        if (count > 0)
        {
            _accepted.Add(count, new KeyValuePair<string, object?>("protocol", protocol));
        }
    }

    public void Rejected(string protocol, ReadingBatchBuilder batch)
    {
        if (batch.RejectedCount == 0)
        {
            return;
        }

        for (var i = 0; i < RejectReasonExtensions.Count; i++)
        {
            var reason = (RejectReason)i;
            var count = batch.RejectedFor(reason);
            if (count > 0)
            {
                _rejected.Add(count, new TagList { { "protocol", protocol }, { "reason", reason.ToTag() } });
            }
        }
    }

    /// <summary>
    /// Counts what a commit did with one device batch: its readings stored, already stored, quarantined (a batch resent,
    /// whole or its readings without a number, quarantines nothing again) and conflicting.
    /// </summary>
    public void Counted(string protocol, Pipeline.CommitResult result)
    {
        Accepted(protocol, result.Stored);
        Duplicate(protocol, result.Duplicates);
        Quarantined(protocol, result.Quarantined);
        Conflicting(protocol, result.Conflicts);
    }

    /// <summary>Counts readings refused at commit as conflicting (<see cref="RejectReason.Conflict"/>) among the rejected readings.</summary>
    private void Conflicting(string protocol, int count)
    {
        if (count > 0)
        {
            _rejected.Add(count, new TagList { { "protocol", protocol }, { "reason", RejectReason.Conflict.ToTag() } });
        }
    }

    private void Duplicate(string protocol, int count)
    {
        if (count > 0)
        {
            _duplicate.Add(count, new KeyValuePair<string, object?>("protocol", protocol));
        }
    }

    private void Quarantined(string protocol, int count)
    {
        if (count > 0)
        {
            _quarantined.Add(count, new KeyValuePair<string, object?>("protocol", protocol));
        }
    }

    public void PayloadRejected(string protocol, string reason) =>
        _payloadsRejected.Add(1, new TagList { { "protocol", protocol }, { "reason", reason } });

    public void Committed(int batches, TimeSpan duration)
    {
        _batchesCommitted.Add(batches);
        _commitDuration.Record(duration.TotalSeconds);
    }

    private static readonly KeyValuePair<string, object?> CommittedOutcome = new("outcome", "committed");
    private static readonly KeyValuePair<string, object?> FailedOutcome = new("outcome", "failed");

    /// <summary>A batch answered <paramref name="waited"/> after it was handed over: committed, or refused by the store.</summary>
    public void BatchAnswered(TimeSpan waited, bool committed) =>
        _commitWait.Record(waited.TotalSeconds, committed ? CommittedOutcome : FailedOutcome);

    public void CommitFailed() => _commitFailures.Add(1);

    /// <summary>Reports the commit queue's depth, the batches waiting for room in it and the wait of its oldest batch, read when metrics are collected.</summary>
    public void ObserveCommitQueue(Func<int> queued, Func<int> waitingForRoom, Func<double> oldestWaitSeconds)
    {
        _meter.CreateObservableGauge(CommitQueued, queued, "{batch}", "Device batches waiting for a commit.");
        _meter.CreateObservableGauge(CommitWaitingForRoom, waitingForRoom, "{batch}", "Device batches read and decoded, waiting for room in the full commit queue.");
        _meter.CreateObservableGauge(CommitOldestWait, oldestWaitSeconds, "s", "How long the oldest batch not yet acknowledged has waited for its commit.");
    }

    /// <summary>Reports the readings handed to patient grains and not yet answered for, read when metrics are collected.</summary>
    public void ObserveGrainCalls(Func<long> readings) =>
        _meter.CreateObservableGauge(GrainCallReadings, readings, "{reading}", "Committed readings handed to patient grains and not yet answered for.");

    public void AlertPublished(string channel) => _alertsPublished.Add(1, new KeyValuePair<string, object?>("channel", channel));

    public void AlertGivenUp(string channel) => _alertsGivenUp.Add(1, new KeyValuePair<string, object?>("channel", channel));

    public void AckSent(string protocol) => _acks.Add(1, new KeyValuePair<string, object?>("protocol", protocol));

    public void DeviceConnected(string protocol) => _connected.Add(1, new KeyValuePair<string, object?>("protocol", protocol));

    public void DeviceDisconnected(string protocol) => _connected.Add(-1, new KeyValuePair<string, object?>("protocol", protocol));

    public void AuthenticationFailed(string protocol) =>
        _authenticationFailures.Add(1, new KeyValuePair<string, object?>("protocol", protocol));

    public void SignInHeld(string protocol) => _signInsHeld.Add(1, new KeyValuePair<string, object?>("protocol", protocol));

    public void GrainCallFailed() => _grainCallFailures.Add(1);

    public void GrainCallsMadeWhole(int calls) => _grainCallsRepaired.Add(calls);
}
