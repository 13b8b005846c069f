using Microsoft.Extensions.Time.Testing;

namespace Telemetry.Ingest.Tests;

public sealed class SignedInDevicesTests
{
    private readonly FakeTimeProvider _clock = new(new DateTimeOffset(2026, 11, 25, 8, 0, 0, TimeSpan.Zero));

    [Fact]
    public void A_device_is_known_by_the_secret_it_signed_in_with_until_that_secret_is_refused()
    {
        var devices = new SignedInDevices(_clock);
        devices.SignedInNow("watch-1", "right");

        Assert.True(devices.SignedInWith("watch-1", "right"));
        Assert.False(devices.SignedInWith("watch-1", "wrong"));
        Assert.False(devices.SignedInWith("watch-2", "right"));

        // A wrong secret refused leaves the device's right one known; the right one refused (rotated, revoked) does not.
        devices.Refused("watch-1", "wrong");
        Assert.True(devices.SignedInWith("watch-1", "right"));
        devices.Refused("watch-1", "right");
        Assert.False(devices.SignedInWith("watch-1", "right"));

        // A new secret replaces the old one.
        devices.SignedInNow("watch-1", "rotated");
        Assert.True(devices.SignedInWith("watch-1", "rotated"));
        Assert.False(devices.SignedInWith("watch-1", "right"));
    }

    [Fact]
    public void Beyond_its_capacity_it_forgets_the_half_that_signed_in_least_lately()
    {
        var devices = new SignedInDevices(_clock, capacity: 4);
        foreach (var device in new[] { "a", "b", "c", "d" })
        {
            devices.SignedInNow(device, "secret-" + device);
            _clock.Advance(TimeSpan.FromSeconds(1));
        }

        // "a" signs in again: "b" and "c" are now the least lately, and go when a fifth device comes.
        devices.SignedInNow("a", "secret-a");
        _clock.Advance(TimeSpan.FromSeconds(1));
        devices.SignedInNow("e", "secret-e");

        Assert.Equal(3, devices.Count);
        Assert.Equal(
            [true, false, false, true, true],
            new[] { "a", "b", "c", "d", "e" }.Select(device => devices.SignedInWith(device, "secret-" + device)));
    }
}
