using Telemetry.Api.Audit;
using Telemetry.Api.Cluster;
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
        devices.MapPost("/", ProvisionAsync);
        devices.MapGet("/{deviceId}", GetAsync);
        devices.MapGet("/{deviceId}/rejects", GetRejectsAsync);
        devices.MapPost("/{deviceId}/token", RotateAsync)
            .WithSummary("Issues the device a new token, shown this once; the old one stops working (a revoked device works again)");
        devices.MapDelete("/{deviceId}/token", RevokeAsync)
            .WithSummary("Revokes the device's token: it is refused until the device gets a new one");
        return routes;
    }

    private static async Task<IResult> ProvisionAsync(ProvisionDeviceRequest request, HttpContext context, IGrainFactory grains, IPatientDirectory directory)
    {
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
        string deviceId, HttpContext context, IGrainFactory grains, DeviceRejectLog rejectLog, IRawSeriesStore store, CancellationToken cancellationToken)
    {
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
