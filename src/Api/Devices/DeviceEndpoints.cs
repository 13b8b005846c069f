using System.Globalization;
using System.Security.Claims;
using Microsoft.AspNetCore.Authorization;
using Telemetry.Api.Audit;
using Telemetry.Api.Cluster;
using Telemetry.Api.Hosting;
using Telemetry.Api.Security;
using Telemetry.Core;
using Telemetry.Core.Devices;
using Telemetry.Core.Grains;
using Telemetry.Core.Storage;
using Telemetry.Core.Vitals;
using Telemetry.Ingest;

namespace Telemetry.Api.Devices;

/// <summary>Device provisioning: bind a device to a patient and hand out its token once.</summary>
public static class DeviceEndpoints
{
    public static IEndpointRouteBuilder MapDeviceEndpoints(this IEndpointRouteBuilder routes)
    {
        // Audited, each request naming the device's patient: which device writes to a patient, and who bound, rotated or
        // revoked it, is part of that patient's record.
        var devices = routes.MapGroup("/api/devices").RequireAuthorization(TelemetryAuthentication.AdminPolicy).RequireRateLimiting(TelemetryAuthentication.ApiRateLimit)
            .Audited().WithTags("Devices");
        devices.MapPost("/", ProvisionAsync).DescribedAs<ProvisionDeviceRequest>();
        devices.MapGet("/{deviceId}", GetAsync);
        devices.MapPost("/{deviceId}/token", RotateAsync)
            .WithSummary("Issues the device a new token, shown this once; the old one stops working (a revoked device works again)");
        devices.MapDelete("/{deviceId}/token", RevokeAsync)
            .WithSummary("Revokes the device's token: it is refused until the device gets a new one");

        // An admin, or the device itself with its own token (an MQTT 3.1.1 device's PUBACK carries no reason, so this is
        // where it learns why it was refused): authorized by the handler, so not by the group's admin policy.
        routes.MapGet("/api/devices/{deviceId}/rejects", GetRejectsAsync)
            .RequireRateLimiting(TelemetryAuthentication.ApiRateLimit).Audited().WithTags("Devices")
            .WithSummary("The device's latest refusals and quarantined readings, newest first: for an admin, or the device with its own token");
        return routes;
    }

    private static async Task<IResult> ProvisionAsync(HttpContext context, IGrainFactory grains, IPatientDirectory directory)
    {
        var (request, problem) = await JsonBody.ReadAsync<ProvisionDeviceRequest>(context.Request, """{"deviceId":"…","patientId":"…"}""");
        if (request is null)
        {
            return problem!;
        }

        var errors = new Dictionary<string, string[]>();
        if (!Identifier.IsValid(request.DeviceId))
        {
            errors["deviceId"] = [Identifier.Shape];
        }

        if (!await Patients.PatientIds.MayNameAsync(request.PatientId, directory, context.RequestAborted))
        {
            errors["patientId"] = [Identifier.PatientShape];
        }

        if (errors.Count > 0)
        {
            return TypedResults.ValidationProblem(errors);
        }

        AuditFilter.ReadsPatient(context, request.PatientId!);

        // Listed first (idempotent, and whatever the client does), so a device is never bound to a patient the
        // dashboards do not know.
        await directory.RegisterAsync(request.PatientId!, CancellationToken.None);
        var secret = await grains.GetGrain<IDeviceGrain>(request.DeviceId!).ProvisionAsync(request.PatientId!);
        if (secret is null)
        {
            return TypedResults.Problem(
                statusCode: StatusCodes.Status409Conflict,
                title: "Device already provisioned",
                detail: $"Device '{request.DeviceId}' is already bound to a patient.");
        }

        var device = new ProvisionedDevice(request.DeviceId!, request.PatientId!, DeviceToken.Format(request.DeviceId!, secret));
        return TypedResults.Created($"/api/devices/{device.DeviceId}", device);
    }

    /// <summary>What the device sent that was refused, and its quarantined readings: for MQTT 3.1.1 senders and integrators.</summary>
    private static async Task<IResult> GetRejectsAsync(
        string deviceId, HttpContext context, IGrainFactory grains, DeviceRejectLog rejectLog, IRawSeriesStore store,
        IAuthorizationService authorization, DeviceAuthenticator devices, CancellationToken cancellationToken)
    {
        if (await RefuseRejectsReaderAsync(deviceId, context, authorization, devices) is { } refused)
        {
            return refused;
        }

        if (!Identifier.IsValid(deviceId))
        {
            return InvalidDeviceId();
        }

        if (await grains.GetGrain<IDeviceGrain>(deviceId).GetAsync() is not { } device)
        {
            return UnknownDevice(deviceId);
        }

        // The quarantined readings are the device's patient's: the read is audited as theirs.
        AuditFilter.ReadsPatient(context, device.PatientId);

        var quarantined = await store.ReadQuarantineAsync(deviceId, DeviceRejectLog.PerDevice, cancellationToken);
        return TypedResults.Ok(new DeviceRejects(
            deviceId,
            rejectLog.Latest(deviceId),
            [.. quarantined.Select(q =>
            {
                var vital = VitalCatalogue.Get(q.Reading.Kind);
                return new QuarantinedReadingView(vital.Name, DateTimeOffset.FromUnixTimeMilliseconds(q.Reading.TimestampMs), q.Reading.Value, vital.Unit, q.Reason);
            })]));
    }

    /// <summary>
    /// Null when the caller may read <paramref name="deviceId"/>'s refusals: an admin, or that device signed in with its
    /// own token (the caller, as audited, is then <c>device:{deviceId}</c>). A device's token is checked as an upload's is,
    /// refusals counted against the caller's address; a person without the admin role is refused.
    /// </summary>
    private static async Task<IResult?> RefuseRejectsReaderAsync(string deviceId, HttpContext context, IAuthorizationService authorization, DeviceAuthenticator devices)
    {
        if ((await authorization.AuthorizeAsync(context.User, TelemetryAuthentication.AdminPolicy)).Succeeded)
        {
            return null;
        }

        if (context.User.Identity?.IsAuthenticated == true)
        {
            return TypedResults.Problem(statusCode: StatusCodes.Status403Forbidden, title: "Forbidden",
                detail: "A device's refusals are read by an admin, or by the device itself with its own token.");
        }

        // Only a token shaped as a device's is checked as one: an expired person's token, or a guess at the admin's, is
        // no device's failed sign-in (which would hold the address's devices back).
        var token = TelemetryAuthentication.BearerToken(context.Request);
        DeviceIdentity? identity;
        try
        {
            identity = token is not null && DeviceToken.TryParse(token, out _, out _)
                ? await devices.AuthenticateAsync(token, from: context.Connection.RemoteIpAddress)
                : null;
        }
        catch (DeviceRegistryUnavailableException exception)
        {
            context.Response.Headers.RetryAfter = "5";
            return TypedResults.Problem(statusCode: StatusCodes.Status503ServiceUnavailable, title: "Device registry unavailable", detail: exception.Message);
        }
        catch (DeviceSignInsHeldException exception)
        {
            context.Response.Headers.RetryAfter = exception.RetryAfterSeconds.ToString(CultureInfo.InvariantCulture);
            return TypedResults.Problem(statusCode: StatusCodes.Status429TooManyRequests, title: "Too many refused sign-ins", detail: exception.Message);
        }

        if (identity is null)
        {
            context.Response.Headers.WWWAuthenticate = token is null ? "Bearer" : "Bearer error=\"invalid_token\"";
            return TypedResults.Problem(statusCode: StatusCodes.Status401Unauthorized, title: "Unauthorized",
                detail: "Send the admin token, or the device's own token, as 'Authorization: Bearer <token>'.");
        }

        // The device is who the audit names, whether it reads its refusals or is refused another's.
        context.User = new ClaimsPrincipal(new ClaimsIdentity(
            [new Claim(TelemetryClaims.Subject, "device:" + identity.DeviceId)], "DeviceToken", TelemetryClaims.Subject, TelemetryClaims.Role));
        return string.Equals(identity.DeviceId, deviceId, StringComparison.Ordinal)
            ? null
            : TypedResults.Problem(statusCode: StatusCodes.Status403Forbidden, title: "Forbidden", detail: "A device reads only its own refusals.");
    }

    private static async Task<IResult> RotateAsync(string deviceId, HttpContext context, IGrainFactory grains, ClusterSignals signals)
    {
        if (!Identifier.IsValid(deviceId))
        {
            return InvalidDeviceId();
        }

        var device = grains.GetGrain<IDeviceGrain>(deviceId);
        if (await device.RotateAsync() is not { } secret)
        {
            return UnknownDevice(deviceId);
        }

        // A connection opened with the old token ends now, on whichever server holds it, so the old token buys nothing
        // more: told before anything else can fail. A cluster that could not be told leaves the new token unshown; the
        // next rotation issues another and tells it again.
        var told = await signals.DeviceCredentialsChangedAsync(deviceId, revoked: false);
        var binding = await device.GetAsync();
        AuditFilter.ReadsPatient(context, binding!.PatientId);
        if (!told)
        {
            return ClusterNotTold(deviceId, "rotated");
        }

        return TypedResults.Ok(new ProvisionedDevice(deviceId, binding.PatientId, DeviceToken.Format(deviceId, secret)));
    }

    private static async Task<IResult> RevokeAsync(string deviceId, HttpContext context, IGrainFactory grains, ClusterSignals signals)
    {
        if (!Identifier.IsValid(deviceId))
        {
            return InvalidDeviceId();
        }

        var device = grains.GetGrain<IDeviceGrain>(deviceId);
        if (!await device.RevokeAsync() || await device.GetAsync() is not { } binding)
        {
            return UnknownDevice(deviceId);
        }

        AuditFilter.ReadsPatient(context, binding.PatientId);

        // A revocation stays; one the cluster could not be told of is told again when repeated.
        if (!await signals.DeviceCredentialsChangedAsync(deviceId, revoked: true))
        {
            return ClusterNotTold(deviceId, "revoked");
        }

        return TypedResults.Ok(binding);
    }

    private static IResult UnknownDevice(string deviceId) =>
        TypedResults.Problem(statusCode: StatusCodes.Status404NotFound, title: "Unknown device", detail: $"No device '{deviceId}' is provisioned.");

    private static IResult InvalidDeviceId() =>
        TypedResults.ValidationProblem(new Dictionary<string, string[]> { ["deviceId"] = [Identifier.Shape] });

    private static IResult ClusterNotTold(string deviceId, string change) =>
        TypedResults.Problem(
            statusCode: StatusCodes.Status503ServiceUnavailable,
            title: "The cluster could not be told",
            detail: $"The token of device '{deviceId}' was {change}, and its connections to this server ended, but the other servers could not be told (Redis did not answer): connections to them may go on. Send the request again.");

    private static async Task<IResult> GetAsync(string deviceId, HttpContext context, IGrainFactory grains)
    {
        if (!Identifier.IsValid(deviceId))
        {
            return InvalidDeviceId();
        }

        if (await grains.GetGrain<IDeviceGrain>(deviceId).GetAsync() is not { } binding)
        {
            return UnknownDevice(deviceId);
        }

        AuditFilter.ReadsPatient(context, binding.PatientId);
        return TypedResults.Ok(binding);
    }
}
