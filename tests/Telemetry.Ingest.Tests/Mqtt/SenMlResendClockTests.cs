using System.Buffers;
using System.Text;
using Microsoft.Extensions.Time.Testing;
using Telemetry.Ingest.Mqtt;

namespace Telemetry.Ingest.Tests.Mqtt;

public sealed class SenMlResendClockTests
{
    private static readonly ReadOnlySequence<byte> Payload = new(Encoding.UTF8.GetBytes("""[{"n":"heart_rate","v":72}]"""));

    [Fact]
    public void A_payload_sent_again_is_read_as_of_its_first_arrival_by_its_device_only_and_for_a_while()
    {
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(1_800_000_000_000));
        var clock = new SenMlResendClock(TimeSpan.FromMinutes(10), time);
        var first = time.GetUtcNow().ToUnixTimeMilliseconds();
        clock.Remember("watch-1", Payload, 7, first);

        time.Advance(TimeSpan.FromSeconds(30));
        Assert.Equal(first, clock.FirstReadAt("watch-1", Payload, 7));
        Assert.Null(clock.FirstReadAt("watch-2", Payload, 7));
        Assert.Null(clock.FirstReadAt("watch-1", new ReadOnlySequence<byte>(Encoding.UTF8.GetBytes("""[{"n":"heart_rate","v":73}]""")), 7));

        // The same payload under another identifier is another message, one this server never read.
        Assert.Null(clock.FirstReadAt("watch-1", Payload, 8));

        // The same payload as a new message a minute later: a resend is of that one.
        time.Advance(TimeSpan.FromMinutes(1));
        var second = time.GetUtcNow().ToUnixTimeMilliseconds();
        clock.Remember("watch-1", Payload, 7, second);
        Assert.Equal(second, clock.FirstReadAt("watch-1", Payload, 7));

        // Two of them in flight at once, each resent under its own identifier: each as of its own arrival.
        clock.Remember("watch-1", Payload, 9, second + 5);
        Assert.Equal(second, clock.FirstReadAt("watch-1", Payload, 7));
        Assert.Equal(second + 5, clock.FirstReadAt("watch-1", Payload, 9));

        time.Advance(TimeSpan.FromMinutes(10));
        Assert.Null(clock.FirstReadAt("watch-1", Payload, 7));
    }

    [Fact]
    public void Each_device_keeps_its_latest_few_and_a_silent_one_is_forgotten()
    {
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(1_800_000_000_000));
        var clock = new SenMlResendClock(TimeSpan.FromMinutes(10), time);
        var now = time.GetUtcNow().ToUnixTimeMilliseconds();
        for (var i = 0; i <= SenMlResendClock.PerDevice; i++)
        {
            clock.Remember("watch-1", new ReadOnlySequence<byte>(Encoding.UTF8.GetBytes($$"""[{"n":"heart_rate","v":{{60 + i}}}]""")), 1, now);
        }

        Assert.Null(clock.FirstReadAt("watch-1", new ReadOnlySequence<byte>(Encoding.UTF8.GetBytes("""[{"n":"heart_rate","v":60}]""")), 1));
        Assert.Equal(now, clock.FirstReadAt("watch-1", new ReadOnlySequence<byte>(Encoding.UTF8.GetBytes("""[{"n":"heart_rate","v":61}]""")), 1));

        time.Advance(TimeSpan.FromMinutes(11));
        clock.Remember("watch-2", Payload, 1, time.GetUtcNow().ToUnixTimeMilliseconds());
        Assert.Equal(1, clock.Devices);
    }
}
