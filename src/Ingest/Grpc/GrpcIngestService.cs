using System.Threading.Channels;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Telemetry.Core.Readings;
using Telemetry.Ingest.Codecs;
using Telemetry.Ingest.Pipeline;
using Telemetry.Protos;

namespace Telemetry.Ingest.Grpc;

/// <summary>
/// The gRPC front door: a bidirectional stream of <see cref="VitalBatch"/> in and <see cref="IngestAck"/> out, the
/// device token as bearer. Batches are pipelined: the stream keeps reading while earlier batches commit, and acks go
/// out in order, each only after its batch is durable. A bounded number of batches may await commit per stream, and
/// while the commit queue is full a stream is not read on until its last batch has committed.
/// Batches arrive encoded (<see cref="IngestStreamBase"/>): a malformed one is refused alone, with its reason, and the
/// stream goes on.
/// </summary>
public sealed partial class GrpcIngestService(
    DeviceAuthenticator authenticator,
    CommitPipeline pipeline,
    IngestInstruments instruments,
    DeviceRejectLog rejectLog,
    DeviceRateLimiter rateLimiter,
    GrpcStreamRegistry streams,
    IOptions<IngestOptions> options,
    TimeProvider timeProvider,
    ILogger<GrpcIngestService> logger) : IngestStreamBase
{
    public const string Protocol = "grpc";

    public override async Task Stream(IAsyncStreamReader<EncodedBatch> requestStream, IServerStreamWriter<IngestAck> responseStream, ServerCallContext context)
    {
        if (streams.IsShuttingDown)
        {
            throw new RpcException(new Status(StatusCode.Unavailable, "the server is shutting down; connect again shortly"));
        }

        var device = await AuthenticateAsync(context);
        using var registration = streams.Open(device.DeviceId, context.CancellationToken);

        // Registered now, so a rotation or revocation from here on ends this stream; one that raced the sign-in is caught here.
        if (!await CheckedAsync(() => authenticator.IsCurrentAsync(device)))
        {
            instruments.AuthenticationFailed(Protocol);
            throw new RpcException(new Status(StatusCode.Unauthenticated, "the device's token was rotated or revoked; connect again with a valid token"));
        }

        instruments.DeviceConnected(Protocol);
        try
        {
            var inFlight = Channel.CreateBounded<Task<IngestAck>>(new BoundedChannelOptions(options.Value.MaxInFlightBatchesPerStream)
            {
                SingleReader = true,
                SingleWriter = true,
            });

            // Reading stops when acks stop (the store failed) or a newer stream of the device takes over.
            using var reading = CancellationTokenSource.CreateLinkedTokenSource(registration.Token);
            var acks = WriteAcksAsync(inFlight.Reader, responseStream, reading, context.CancellationToken);
            var batch = new ReadingBatchBuilder(options.Value.ToLimits(), timeProvider);
            RpcException? refusal = null;
            var dropped = false;
            var receiving = true;
            try
            {
                while (await requestStream.MoveNext(reading.Token))
                {
                    receiving = false;
                    var submitted = SubmitAsync(device, requestStream.Current, batch);
                    receiving = true;
                    await inFlight.Writer.WriteAsync(submitted, reading.Token);

                    // With the commit queue full, the stream is not read on until this batch is committed: the device is
                    // held back by HTTP/2's flow control rather than its batches decoded and held in the server, so a
                    // backlog costs at most one waiting batch per stream, however many streams there are.
                    if (pipeline.IsFull && !submitted.IsCompleted)
                    {
                        await ((Task)submitted).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                    }
                }
            }
            catch (OperationCanceledException) when (reading.IsCancellationRequested && !context.CancellationToken.IsCancellationRequested)
            {
                // The acks stopped (their status ends the call below), a newer stream replaced this one, or the token changed.
            }
            catch (RpcException exception)
            {
                // Refused from here on (the rate limit, or a message gRPC could not take): the acks of batches already
                // taken still go out first.
                if (receiving)
                {
                    Unreadable(device, exception);
                }

                refusal = exception;
            }
            catch (Exception exception) when (exception is IOException || (exception is OperationCanceledException && context.CancellationToken.IsCancellationRequested))
            {
                // The device's connection or call dropped (a phone losing its network; Kestrel's "request stream was
                // aborted", which can come before the call's token is cancelled): a device's everyday, not the server's
                // error. What was taken still commits; the device sends again what it has no ack for.
                dropped = true;
            }
            finally
            {
                inFlight.Writer.TryComplete();
            }

            if (dropped)
            {
                // Nothing can be answered any more: the acks' writer ends once what was taken has committed (its
                // writes go nowhere) or the call's cancellation stops it.
                await acks.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                LogStreamDropped(logger, device.DeviceId);
                return;
            }

            await acks;
            if (refusal is not null)
            {
                throw refusal;
            }

            switch (registration.EndedBy)
            {
                case GrpcStreamRegistry.StreamEnd.Replaced:
                    throw new RpcException(new Status(StatusCode.Aborted, "a newer stream of this device took over; batches without an ack must be sent again"));
                case GrpcStreamRegistry.StreamEnd.CredentialsChanged:
                    throw new RpcException(new Status(StatusCode.Unauthenticated, "the device's token was rotated or revoked; batches without an ack must be sent again with a valid token"));
                case GrpcStreamRegistry.StreamEnd.ShuttingDown:
                    throw new RpcException(new Status(StatusCode.Unavailable, "the server is shutting down; connect again shortly and send the batches without an ack"));
            }
        }
        finally
        {
            instruments.DeviceDisconnected(Protocol);
        }
    }

    /// <summary>
    /// Counts a message gRPC refused as it was read (over <c>MaxMessageBytes</c>: RESOURCE_EXHAUSTED; in a compression it
    /// does not read, or cut short), which ends the stream as gRPC answers it, and puts it in the device's reject log, as
    /// the other ways in count theirs. A call cancelled or past its deadline is not the message's fault.
    /// </summary>
    private void Unreadable(DeviceIdentity device, RpcException exception)
    {
        if (exception.StatusCode is StatusCode.Cancelled or StatusCode.DeadlineExceeded)
        {
            return;
        }

        var tooLarge = exception.StatusCode == StatusCode.ResourceExhausted;
        instruments.PayloadRejected(Protocol, tooLarge ? "too_large" : "malformed");
        rejectLog.Record(device.DeviceId, Protocol, tooLarge
            ? $"a message over the limit of {options.Value.MaxMessageBytes} bytes; split it"
            : $"a message that could not be read: {exception.Status.Detail}");
    }

    private async Task<DeviceIdentity> AuthenticateAsync(ServerCallContext context)
    {
        var header = context.RequestHeaders.GetValue("authorization");
        const string Scheme = "Bearer ";
        if (header is null || !header.StartsWith(Scheme, StringComparison.OrdinalIgnoreCase))
        {
            instruments.AuthenticationFailed(Protocol);
            throw new RpcException(new Status(StatusCode.Unauthenticated, "send the device token as 'authorization: Bearer <token>'"));
        }

        var identity = await CheckedAsync(() => authenticator.AuthenticateAsync(header[Scheme.Length..].Trim(), from: context.GetHttpContext().Connection.RemoteIpAddress));
        if (identity is null)
        {
            instruments.AuthenticationFailed(Protocol);
            throw new RpcException(new Status(StatusCode.Unauthenticated, "unknown device or wrong token"));
        }

        return identity;
    }

    /// <summary>Asks the device registry; one that cannot answer is not the device's fault: UNAVAILABLE, so it tries again later.</summary>
    private async Task<T> CheckedAsync<T>(Func<Task<T>> ask)
    {
        try
        {
            return await ask();
        }
        catch (DeviceRegistryUnavailableException exception)
        {
            LogSignInUnavailable(logger, exception.InnerException!);
            throw new RpcException(new Status(StatusCode.Unavailable, exception.Message));
        }
        catch (DeviceSignInsHeldException exception)
        {
            instruments.SignInHeld(Protocol);
            throw new RpcException(new Status(StatusCode.ResourceExhausted, exception.Message), new Metadata { { "retry-after", exception.RetryAfterSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture) } });
        }
    }

    /// <summary>Decodes one batch synchronously (the builder is reused) and returns the task of its ack.</summary>
    private Task<IngestAck> SubmitAsync(DeviceIdentity device, EncodedBatch message, ReadingBatchBuilder batch)
    {
        try
        {
            return Submit(device, message.Bytes, batch);
        }
        finally
        {
            message.Release();
        }
    }

    private Task<IngestAck> Submit(DeviceIdentity device, ReadOnlySpan<byte> message, ReadingBatchBuilder batch)
    {
        if (!rateLimiter.TryTakeMessage(device.DeviceId))
        {
            var reason = $"more than {options.Value.MaxMessagesPerSecondPerDevice} batches a second; batch readings or slow down, then resend what has no ack";
            instruments.PayloadRejected(Protocol, "rate_limited");
            rejectLog.Record(device.DeviceId, Protocol, reason);
            throw new RpcException(new Status(StatusCode.ResourceExhausted, reason));
        }

        batch.Reset();
        if (!ProtobufBatchDecoder.TryDecode(message, batch, out var error) || batch.Overflowed)
        {
            instruments.PayloadRejected(Protocol, "malformed");
            var reason = error ?? $"a batch may hold at most {batch.Limits.MaxReadingsPerBatch} readings";
            rejectLog.Record(device.DeviceId, Protocol, reason);
            return Task.FromResult(new IngestAck { Seq = batch.Sequence, Status = AckStatus.Rejected, Reason = reason });
        }

        instruments.Rejected(Protocol, batch);
        var rejected = (uint)batch.RejectedCount;
        var rejects = batch.DescribeRejects() ?? string.Empty;
        if (rejects.Length > 0)
        {
            rejectLog.Record(device.DeviceId, Protocol, rejects);
        }

        if (batch.Count == 0 && batch.Quarantined.Count == 0)
        {
            instruments.PayloadRejected(Protocol, rejected > 0 ? "all_rejected" : "empty");
            return Task.FromResult(new IngestAck { Seq = batch.Sequence, Status = AckStatus.Rejected, Rejected = rejected, Reason = rejects.Length > 0 ? rejects : "no readings" });
        }

        return CommitAsync(batch.ToBatch(device.DeviceId, device.PatientId), rejected, rejects);
    }

    private async Task<IngestAck> CommitAsync(DeviceBatch batch, uint rejected, string rejects)
    {
        var result = await pipeline.CommitAsync(batch, CancellationToken.None);
        instruments.Counted(Protocol, result);
        rejectLog.RecordConflicts(batch.DeviceId, Protocol, result.Conflicts);
        // Only quarantined readings (stored apart): nothing the sender should count as stored, also when it was sent
        // again (its batch number already committed), as the first answer said.
        if (batch.Readings.IsEmpty)
        {
            instruments.PayloadRejected(Protocol, "all_rejected");
            return new IngestAck { Seq = batch.Sequence, Status = AckStatus.Rejected, Rejected = rejected, Reason = rejects };
        }

        if (result.Outcome == CommitOutcome.Duplicate)
        {
            // Its readings refused as they were read are told again, as the first answer told them.
            return new IngestAck
            {
                Seq = batch.Sequence,
                Status = AckStatus.Duplicate,
                Duplicates = (uint)result.Duplicates,
                Rejected = rejected,
                Reason = CommitResult.DescribeDuplicateBatch(batch.Sequence, rejects.Length > 0 ? rejects : null),
            };
        }

        if (result.AllConflicting)
        {
            // Refused for good: sent again, every reading would conflict again.
            instruments.PayloadRejected(Protocol, "all_rejected");
            return new IngestAck { Seq = batch.Sequence, Status = AckStatus.Rejected, Rejected = rejected + (uint)result.Conflicts, Reason = result.Describe(rejects.Length > 0 ? rejects : null)! };
        }

        return new IngestAck
        {
            Seq = batch.Sequence,
            Status = AckStatus.Committed,
            Accepted = (uint)result.Stored,
            Rejected = rejected + (uint)result.Conflicts,
            Duplicates = (uint)result.Duplicates,
            Reason = result.Describe(rejects.Length > 0 ? rejects : null) ?? string.Empty,
        };
    }

    private async Task WriteAcksAsync(ChannelReader<Task<IngestAck>> inFlight, IServerStreamWriter<IngestAck> responseStream, CancellationTokenSource reading, CancellationToken cancellationToken)
    {
        try
        {
            await foreach (var pending in inFlight.ReadAllAsync(cancellationToken))
            {
                IngestAck ack;
                try
                {
                    ack = await pending;
                }
                catch (StoreUnavailableException exception)
                {
                    // Nothing from here on is acknowledged: end the stream so the device resends what it has no ack for.
                    LogStreamEnded(logger, exception.Message);
                    throw new RpcException(new Status(StatusCode.Unavailable, exception.Message));
                }

                await responseStream.WriteAsync(ack, cancellationToken);
                if (ack.Status is AckStatus.Committed or AckStatus.Duplicate)
                {
                    // As over MQTT: an ack of what is stored; a refusal is counted as such.
                    instruments.AckSent(Protocol);
                }
            }
        }
        catch
        {
            // When acks stop for any reason, reading stops too, so the read loop never waits on a full channel.
            await reading.CancelAsync();
            throw;
        }
    }

    [LoggerMessage(EventId = 1201, Level = LogLevel.Warning, Message = "gRPC ingest stream ended without further acks: {Reason}")]
    private static partial void LogStreamEnded(ILogger logger, string reason);

    [LoggerMessage(EventId = 1203, Level = LogLevel.Warning, Message = "A device's gRPC sign-in could not be checked: the device registry did not answer")]
    private static partial void LogSignInUnavailable(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 1202, Level = LogLevel.Debug, Message = "Device {DeviceId}'s gRPC stream ended with its connection; what it sent without an ack it sends again")]
    private static partial void LogStreamDropped(ILogger logger, string deviceId);
}
