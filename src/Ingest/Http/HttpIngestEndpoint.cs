using System.IO.Compression;
using System.IO.Pipelines;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Options;
using Microsoft.Net.Http.Headers;
using Telemetry.Core.Readings;
using Telemetry.Ingest.Codecs;
using Telemetry.Ingest.Pipeline;

namespace Telemetry.Ingest.Http;

/// <summary>
/// Bulk upload for backfill: <c>POST /api/devices/{deviceId}/readings</c> with the device token as bearer. The body is
/// read from the request pipe as it arrives and committed in batches, so a day of readings never sits in memory whole.
/// It answers 200 only after everything it counts as accepted is committed. A resent upload stores nothing twice:
/// readings the device already sent (same vital and time) are counted as duplicates.
/// </summary>
public sealed class HttpIngestEndpoint(
    DeviceAuthenticator authenticator,
    CommitPipeline pipeline,
    IngestInstruments instruments,
    DeviceRejectLog rejectLog,
    DeviceRateLimiter rateLimiter,
    IOptions<IngestOptions> options,
    TimeProvider timeProvider)
{
    public const string Protocol = "http";

    public static void Map(IEndpointRouteBuilder routes) =>
        routes.MapPost("/api/devices/{deviceId}/readings", (string deviceId, HttpContext context, HttpIngestEndpoint endpoint) => endpoint.UploadAsync(deviceId, context))
            .WithTags("Devices")
            .DisableAntiforgery();

    public async Task<IResult> UploadAsync(string deviceId, HttpContext context)
    {
        var request = context.Request;
        var header = request.Headers.Authorization.ToString();
        const string Scheme = "Bearer ";
        DeviceIdentity? identity;
        try
        {
            identity = header.StartsWith(Scheme, StringComparison.OrdinalIgnoreCase)
                ? await authenticator.AuthenticateAsync(header[Scheme.Length..].Trim(), from: context.Connection.RemoteIpAddress)
                : null;
        }
        catch (DeviceRegistryUnavailableException exception)
        {
            return RegistryUnavailable(context, exception);
        }
        catch (DeviceSignInsHeldException exception)
        {
            instruments.SignInHeld(Protocol);
            context.Response.Headers.RetryAfter = exception.RetryAfterSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
            return Problem(StatusCodes.Status429TooManyRequests, "Too many refused sign-ins", exception.Message);
        }

        var signedIn = timeProvider.GetTimestamp();
        if (identity is null)
        {
            instruments.AuthenticationFailed(Protocol);
            context.Response.Headers.WWWAuthenticate = "Bearer";
            return Problem(StatusCodes.Status401Unauthorized, "Unauthorized", "Send the device token as 'Authorization: Bearer <token>'.");
        }

        if (!string.Equals(identity.DeviceId, deviceId, StringComparison.Ordinal))
        {
            Refused(identity, "forbidden", $"an upload to another device's path ({Clip(deviceId)})");
            return Problem(StatusCodes.Status403Forbidden, "Forbidden", "A device uploads only its own readings.");
        }

        // The format first: an upload refused for it reads nothing, and takes nothing from the device's allowance.
        if (FormatOf(request.ContentType) is not { } format)
        {
            Refused(identity, "unsupported_media_type", $"an upload of content type '{Clip(request.ContentType)}'");
            return Problem(StatusCodes.Status415UnsupportedMediaType, "Unsupported media type",
                "Send application/json, application/senml+json or application/x-protobuf (one payload, read by its first byte as on MQTT: '[' SenML, '{' the JSON batch, anything else a protobuf VitalBatch), application/x-ndjson (a reading object per line) or application/x-protobuf; delimited=true (VitalBatch messages, each preceded by its varint length).");
        }

        // Compressed bodies are read as gzip or not at all: any other coding, read as the format, would be garbage
        // counted as rejected readings under a 200.
        if (CodingOf(request.Headers.ContentEncoding.ToString()) is not { } gzip)
        {
            Refused(identity, "unsupported_encoding", $"an upload with Content-Encoding '{Clip(request.Headers.ContentEncoding.ToString())}'");
            context.Response.Headers.AcceptEncoding = "gzip";
            return Problem(StatusCodes.Status415UnsupportedMediaType, "Unsupported content encoding",
                "Send the body as it is or gzip-compressed (Content-Encoding: gzip).");
        }

        if (!rateLimiter.TryTakeUpload(identity.DeviceId))
        {
            // The allowance refills one upload every 60 / MaxUploadsPerMinutePerDevice seconds.
            instruments.PayloadRejected(Protocol, "rate_limited");
            context.Response.Headers.RetryAfter = Math.Max(1, (int)Math.Ceiling(60.0 / options.Value.MaxUploadsPerMinutePerDevice)).ToString(System.Globalization.CultureInfo.InvariantCulture);
            return Problem(StatusCodes.Status429TooManyRequests, "Too many uploads",
                $"A device may start {options.Value.MaxUploadsPerMinutePerDevice} uploads a minute; send more readings per upload.");
        }

        var limits = options.Value;
        if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } bodySize)
        {
            bodySize.MaxRequestBodySize = limits.MaxUploadBytes;
        }

        if (request.ContentLength > limits.MaxUploadBytes)
        {
            return TooLarge(limits.MaxUploadBytes);
        }

        var upload = new Upload(limits, timeProvider);
        var reader = new UploadStreamReader(format, limits.UploadCommitReadings, limits.MaxMessageBytes);
        // The limit holds for what a compressed body expands to, as for a body sent as it is.
        var body = gzip
            ? PipeReader.Create(new ExpandedLimit(new GZipStream(request.Body, CompressionMode.Decompress, leaveOpen: true), limits.MaxUploadBytes))
            : request.BodyReader;
        try
        {
            while (true)
            {
                var read = await body.ReadAsync(context.RequestAborted);
                var status = reader.Read(read.Buffer, read.IsCompleted, upload.Batch, out var consumed);
                body.AdvanceTo(consumed, status == UploadReadStatus.NeedMoreData ? read.Buffer.End : consumed);
                if (status == UploadReadStatus.Malformed && reader.PackRefused)
                {
                    // RFC 8428: a pack that may not be used is not used; what earlier parts stored stays.
                    upload.Batch.Reset();
                }

                if (status is UploadReadStatus.BatchFull or UploadReadStatus.Completed or UploadReadStatus.Malformed)
                {
                    // A long upload outlives its sign-in: a token revoked or replaced meanwhile stores nothing more. A
                    // first part read within a second of the sign-in is not asked about again.
                    if ((upload.Parts > 0 || timeProvider.GetElapsedTime(signedIn) > TimeSpan.FromSeconds(1)) && !await authenticator.IsCurrentAsync(identity))
                    {
                        instruments.AuthenticationFailed(Protocol);
                        context.Response.Headers.WWWAuthenticate = "Bearer";
                        return Problem(StatusCodes.Status401Unauthorized, "Unauthorized",
                            "The device's token was revoked or replaced during the upload. Readings counted as accepted are stored; send the rest with the current token.",
                            upload.Result());
                    }

                    await CommitAsync(identity, upload, context.RequestAborted);
                    if (reader.TakeRecordError() is { } recordError)
                    {
                        rejectLog.Record(deviceId, Protocol, recordError);
                    }
                }

                if (status == UploadReadStatus.Completed)
                {
                    var result = upload.Result();
                    if (result.Accepted == 0 && result.Duplicates == 0 && result.Rejected == 0)
                    {
                        // Well formed, and no reading in it ({"readings":[]}, a SenML pack of base fields): refused as an
                        // empty MQTT payload or gRPC batch is, rather than answered as if something had been taken.
                        instruments.PayloadRejected(Protocol, "empty");
                        rejectLog.Record(deviceId, Protocol, "an upload that holds no readings");
                        return Problem(StatusCodes.Status400BadRequest, "Empty upload", "The upload holds no readings.", result);
                    }

                    return TypedResults.Ok(result);
                }

                if (status == UploadReadStatus.Malformed)
                {
                    instruments.PayloadRejected(Protocol, "malformed");
                    rejectLog.Record(deviceId, Protocol, reader.Error!);
                    return Problem(StatusCodes.Status400BadRequest, "Malformed upload",
                        $"{reader.Error}. Readings before this point are stored; fix the upload and send it again (stored readings count as duplicates).",
                        upload.Result());
                }
            }
        }
        catch (BadHttpRequestException exception) when (exception.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            return TooLarge(limits.MaxUploadBytes, upload.Result());
        }
        catch (BadHttpRequestException exception)
        {
            return Problem(exception.StatusCode, "Upload not read", $"{exception.Message}. Readings counted as accepted are stored.", upload.Result());
        }
        catch (InvalidDataException exception) when (gzip)
        {
            instruments.PayloadRejected(Protocol, "malformed");
            rejectLog.Record(deviceId, Protocol, $"an upload whose gzip body could not be read: {exception.Message}");
            return Problem(StatusCodes.Status400BadRequest, "Malformed upload",
                $"The gzip body could not be decompressed ({exception.Message}). Readings before this point are stored; send it again (stored readings count as duplicates).",
                upload.Result());
        }
        catch (DeviceRegistryUnavailableException exception)
        {
            return RegistryUnavailable(context, exception, upload.Result());
        }
        catch (StoreUnavailableException exception)
        {
            context.Response.Headers.RetryAfter = "5";
            return Problem(StatusCodes.Status503ServiceUnavailable, "Store unavailable",
                $"{exception.Message}. Readings counted as accepted are stored; send the upload again.", upload.Result());
        }
        finally
        {
            await body.CompleteAsync();
        }
    }

    private async Task CommitAsync(DeviceIdentity device, Upload upload, CancellationToken cancellationToken)
    {
        var batch = upload.Batch;
        if (batch.Overflowed)
        {
            // Cannot happen with the capacity above; if it did, readings were dropped and must not be answered as taken.
            throw new InvalidOperationException("An upload batch overflowed its capacity.");
        }

        instruments.Rejected(Protocol, batch);
        upload.CountRejects();
        if (batch.DescribeRejects() is { } rejects)
        {
            rejectLog.Record(device.DeviceId, Protocol, rejects);
        }

        if (batch.Count > 0 || batch.Quarantined.Count > 0)
        {
            // Uploads carry no sequence numbers: resends are recognised reading by reading.
            batch.Sequence = 0;
            var result = await pipeline.CommitAsync(batch.ToBatch(device.DeviceId, device.PatientId), cancellationToken);
            upload.Accepted += result.Stored;
            upload.Duplicates += result.Duplicates;
            upload.CountConflicts(result.Conflicts);
            instruments.Counted(Protocol, result);
            rejectLog.RecordConflicts(device.DeviceId, Protocol, result.Conflicts);
        }

        batch.Reset();
        upload.Parts++;
    }

    /// <summary>What a device sent, cut short for its reject log, which keeps a bounded number of entries of any length.</summary>
    private static string Clip(string? sent) => sent is { Length: > 64 } ? string.Concat(sent.AsSpan(0, 64), "…") : sent ?? string.Empty;

    private void Refused(DeviceIdentity device, string reason, string description)
    {
        instruments.PayloadRejected(Protocol, reason);
        rejectLog.Record(device.DeviceId, Protocol, description);
    }

    /// <summary>Whether a body is gzip-compressed (true), as it is (false), or in a coding not read here (null).</summary>
    private static bool? CodingOf(string contentEncoding) =>
        contentEncoding.Trim().ToLowerInvariant() switch
        {
            "" or "identity" => false,
            "gzip" or "x-gzip" => true,
            _ => null,
        };

    /// <summary>
    /// An upload is one payload, read by its first byte as an MQTT payload is, whichever of the payloads' types it is
    /// sent as (SenML sent as <c>application/json</c> is still SenML); lines of JSON, and protobuf messages each with its
    /// length before it (<c>delimited=true</c>), are told by the type alone, as their first byte cannot tell them.
    /// </summary>
    private static UploadFormat? FormatOf(string? contentType)
    {
        if (string.IsNullOrWhiteSpace(contentType))
        {
            return UploadFormat.Payload;
        }

        if (!MediaTypeHeaderValue.TryParse(contentType, out var parsed))
        {
            return null;
        }

        return parsed.MediaType.Value?.ToLowerInvariant() switch
        {
            "application/json" or "application/senml+json" => UploadFormat.Payload,
            "application/x-ndjson" or "application/jsonl" or "application/jsonlines" => UploadFormat.NdJson,
            "application/x-protobuf" or "application/protobuf" or "application/octet-stream" =>
                parsed.Parameters.Any(p => p.Name.Equals("delimited", StringComparison.OrdinalIgnoreCase) && HeaderUtilities.RemoveQuotes(p.Value).Equals("true", StringComparison.OrdinalIgnoreCase))
                    ? UploadFormat.DelimitedProtobuf
                    : UploadFormat.Payload,
            _ => null,
        };
    }

    private IResult TooLarge(long limit, UploadResult? partial = null)
    {
        instruments.PayloadRejected(Protocol, "too_large");
        return Problem(StatusCodes.Status413PayloadTooLarge, "Upload too large",
            $"An upload may be at most {limit} bytes; split it (stored readings count as duplicates when sent again).", partial);
    }

    private static IResult RegistryUnavailable(HttpContext context, DeviceRegistryUnavailableException exception, UploadResult? partial = null)
    {
        context.Response.Headers.RetryAfter = "5";
        return Problem(StatusCodes.Status503ServiceUnavailable, "Device registry unavailable",
            partial is null ? exception.Message : $"{exception.Message} Readings counted as accepted are stored; send the rest again.", partial);
    }

    private static IResult Problem(int status, string title, string detail, UploadResult? partial = null) =>
        TypedResults.Problem(
            statusCode: status,
            title: title,
            detail: detail,
            extensions: partial is null ? null : new Dictionary<string, object?>
            {
                ["accepted"] = partial.Accepted,
                ["duplicates"] = partial.Duplicates,
                ["rejected"] = partial.Rejected,
                ["rejects"] = partial.Rejects,
            });

    /// <summary>One upload's running batch and totals.</summary>
    private sealed class Upload
    {
        private readonly long[] _rejects = new long[RejectReasonExtensions.Count];

        public Upload(IngestOptions options, TimeProvider timeProvider)
        {
            // Room for a full batch plus the largest single protobuf message: at most one reading per 8-byte value.
            var capacity = options.UploadCommitReadings + (options.MaxMessageBytes / 8) + 1;
            Batch = new ReadingBatchBuilder(new ValidationLimits(options.MaxFutureSkew, options.BackfillHorizon, capacity), timeProvider);
        }

        public ReadingBatchBuilder Batch { get; }

        public long Accepted { get; set; }

        /// <summary>Parts of the body read and handed to the store so far (each up to <see cref="IngestOptions.UploadCommitReadings"/> readings).</summary>
        public int Parts { get; set; }

        public long Duplicates { get; set; }

        public void CountRejects()
        {
            for (var i = 0; i < _rejects.Length; i++)
            {
                _rejects[i] += Batch.RejectedFor((RejectReason)i);
            }
        }

        /// <summary>Counts readings the commit refused for another value stored at their time (the decoder finds none).</summary>
        public void CountConflicts(int conflicts) => _rejects[(int)RejectReason.Conflict] += conflicts;

        public UploadResult Result() => new(
            Accepted,
            Duplicates,
            _rejects.Sum(),
            Enumerable.Range(0, _rejects.Length)
                .Where(i => _rejects[i] > 0)
                .ToDictionary(i => ((RejectReason)i).ToTag(), i => _rejects[i]));
    }
}
