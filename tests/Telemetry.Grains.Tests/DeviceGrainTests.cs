using Orleans;
using Orleans.Runtime;
using Telemetry.Core.Devices;
using Telemetry.Core.Grains;

namespace Telemetry.Grains.Tests;

public sealed class DeviceGrainTests(ClusterFixture fixture) : IClassFixture<ClusterFixture>
{
    [Fact]
    public async Task Provisioned_device_authenticates_with_its_secret_only()
    {
        var device = fixture.Cluster.GrainFactory.GetGrain<IDeviceGrain>("watch-auth");

        var secret = await device.ProvisionAsync("p-auth");

        Assert.NotNull(secret);
        Assert.Equal("p-auth", (await device.AuthenticateAsync(new DeviceSecret(secret)))?.PatientId);
        Assert.Null(await device.AuthenticateAsync(new DeviceSecret(secret[..^1] + (secret[^1] == '0' ? '1' : '0'))));
        Assert.Null(await device.AuthenticateAsync(new DeviceSecret(string.Empty)));
    }

    [Fact]
    public async Task A_sign_in_naming_a_device_never_provisioned_does_not_keep_its_grain_active()
    {
        var unknown = fixture.Cluster.GrainFactory.GetGrain<IDeviceGrain>("watch-never-provisioned");
        var known = fixture.Cluster.GrainFactory.GetGrain<IDeviceGrain>("watch-provisioned");
        var secret = await known.ProvisionAsync("p-provisioned");

        Assert.Null(await unknown.AuthenticateAsync(new DeviceSecret("guess")));
        Assert.NotNull(await known.AuthenticateAsync(new DeviceSecret(secret!)));

        var management = fixture.Cluster.GrainFactory.GetGrain<IManagementGrain>(0);
        async Task<bool> ActiveAsync(IDeviceGrain device) => (await management.GetActiveGrains(device.GetGrainId().Type)).Contains(device.GetGrainId());
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (await ActiveAsync(unknown) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(50);
        }

        Assert.False(await ActiveAsync(unknown));
        Assert.True(await ActiveAsync(known));
    }

    [Fact]
    public async Task Device_cannot_be_provisioned_twice()
    {
        var device = fixture.Cluster.GrainFactory.GetGrain<IDeviceGrain>("watch-twice");

        Assert.NotNull(await device.ProvisionAsync("p-one"));
        Assert.Null(await device.ProvisionAsync("p-two"));

        var binding = await device.GetAsync();
        Assert.Equal("p-one", binding?.PatientId);
    }

    [Fact]
    public async Task A_new_token_replaces_the_old_and_a_revoked_device_works_again_only_with_a_new_one()
    {
        var device = fixture.Cluster.GrainFactory.GetGrain<IDeviceGrain>("watch-rotate");
        var first = await device.ProvisionAsync("p-rotate");

        var second = await device.RotateAsync();

        Assert.NotNull(first);
        Assert.NotNull(second);
        Assert.Null(await device.AuthenticateAsync(new DeviceSecret(first)));
        Assert.Equal("p-rotate", (await device.AuthenticateAsync(new DeviceSecret(second)))?.PatientId);
        Assert.NotNull((await device.GetAsync())?.RotatedAt);

        Assert.True(await device.RevokeAsync());
        Assert.Null(await device.AuthenticateAsync(new DeviceSecret(second)));
        Assert.NotNull((await device.GetAsync())?.RevokedAt);

        var third = await device.RotateAsync();
        Assert.NotNull(third);
        Assert.Equal("p-rotate", (await device.AuthenticateAsync(new DeviceSecret(third)))?.PatientId);
        Assert.Null((await device.GetAsync())?.RevokedAt);
        Assert.Equal("p-rotate", (await device.GetAsync())?.PatientId);
    }

    [Fact]
    public async Task An_unknown_device_can_be_neither_rotated_nor_revoked()
    {
        var device = fixture.Cluster.GrainFactory.GetGrain<IDeviceGrain>("watch-rotate-never");

        Assert.Null(await device.RotateAsync());
        Assert.False(await device.RevokeAsync());
        Assert.Null(await device.GetAsync());
    }

    [Fact]
    public async Task Unknown_device_does_not_authenticate()
    {
        var device = fixture.Cluster.GrainFactory.GetGrain<IDeviceGrain>("watch-never-provisioned");

        Assert.Null(await device.AuthenticateAsync(new DeviceSecret("00")));
        Assert.Null(await device.GetAsync());
    }

    [Fact]
    public async Task Binding_survives_deactivation_because_it_is_stored_in_duckdb()
    {
        var device = fixture.Cluster.GrainFactory.GetGrain<IDeviceGrain>("watch-durable");
        var secret = await device.ProvisionAsync("p-durable");

        await fixture.DeactivateIdleGrainsAsync();

        Assert.Equal("p-durable", (await device.AuthenticateAsync(new DeviceSecret(secret!)))?.PatientId);
    }
}
