using Telemetry.Api.Security;
using Telemetry.Core;
using Telemetry.Core.Devices;
using Telemetry.Core.Grains;

namespace Telemetry.Api.Devices;

/// <summary>Device provisioning: bind a device to a patient and hand out its token once.</summary>
public static class DeviceEndpoints
{
    public static IEndpointRouteBuilder MapDeviceEndpoints(this IEndpointRouteBuilder routes)
    {
        var devices = routes.MapGroup("/api/devices").AddEndpointFilter<AdminAuthorizationFilter>().WithTags("Devices");
        devices.MapPost("/", ProvisionAsync);
        devices.MapGet("/{deviceId}", GetAsync);
        return routes;
    }

    private static async Task<IResult> ProvisionAsync(ProvisionDeviceRequest request, IGrainFactory grains)
    {
        var errors = new Dictionary<string, string[]>();
        if (!Identifier.IsValid(request.DeviceId))
        {
            errors["deviceId"] = ["1 to 128 characters of letters, digits and - _ : ."];
        }

        if (!Identifier.IsValid(request.PatientId))
        {
            errors["patientId"] = ["1 to 128 characters of letters, digits and - _ : ."];
        }

        if (errors.Count > 0)
        {
            return TypedResults.ValidationProblem(errors);
        }

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

    private static async Task<IResult> GetAsync(string deviceId, IGrainFactory grains)
    {
        if (!Identifier.IsValid(deviceId) || await grains.GetGrain<IDeviceGrain>(deviceId).GetAsync() is not { } binding)
        {
            return TypedResults.Problem(statusCode: StatusCodes.Status404NotFound, title: "Unknown device", detail: $"No device '{deviceId}' is provisioned.");
        }

        return TypedResults.Ok(binding);
    }
}
