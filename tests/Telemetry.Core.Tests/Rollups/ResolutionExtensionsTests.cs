using Telemetry.Core.Rollups;

namespace Telemetry.Core.Tests.Rollups;

public sealed class ResolutionExtensionsTests
{
    // 2023-11-14T22:15:23.456Z
    private const long Timestamp = 1_700_000_123_456;

    [Theory]
    [InlineData(Resolution.Minute, 1_700_000_100_000)] // 22:15:00
    [InlineData(Resolution.Hour, 1_699_999_200_000)] // 22:00:00
    [InlineData(Resolution.Day, 1_699_920_000_000)] // 2023-11-14T00:00:00
    public void A_window_starts_at_the_boundary_at_or_before_the_timestamp(Resolution resolution, long expected)
    {
        Assert.Equal(expected, resolution.WindowStart(Timestamp));
        Assert.Equal(expected, resolution.WindowStart(expected));
        Assert.Equal(expected, resolution.WindowStart(expected + resolution.Milliseconds() - 1));
    }

    [Fact]
    public void Window_starts_agree_with_calendar_arithmetic()
    {
        var time = DateTimeOffset.FromUnixTimeMilliseconds(Timestamp);

        Assert.Equal(new DateTimeOffset(2023, 11, 14, 22, 15, 0, TimeSpan.Zero).ToUnixTimeMilliseconds(), Resolution.Minute.WindowStart(Timestamp));
        Assert.Equal(new DateTimeOffset(time.Date, TimeSpan.Zero).ToUnixTimeMilliseconds(), Resolution.Day.WindowStart(Timestamp));
    }

    [Theory]
    [InlineData(Resolution.Minute, -1, -60_000)]
    [InlineData(Resolution.Minute, -60_000, -60_000)]
    [InlineData(Resolution.Minute, -60_001, -120_000)]
    [InlineData(Resolution.Hour, -1, -3_600_000)]
    [InlineData(Resolution.Day, -1, -86_400_000)]
    [InlineData(Resolution.Day, -86_400_001, -172_800_000)]
    public void Before_1970_a_window_still_starts_at_or_before_the_timestamp(Resolution resolution, long timestampMs, long expected) =>
        Assert.Equal(expected, resolution.WindowStart(timestampMs));

    [Theory]
    [InlineData(Resolution.Minute, 60_000)]
    [InlineData(Resolution.Hour, 3_600_000)]
    [InlineData(Resolution.Day, 86_400_000)]
    public void A_resolution_knows_its_length_in_milliseconds(Resolution resolution, long milliseconds) =>
        Assert.Equal(milliseconds, resolution.Milliseconds());

    [Theory]
    [InlineData(Resolution.Minute, "1m")]
    [InlineData(Resolution.Hour, "1h")]
    [InlineData(Resolution.Day, "1d")]
    public void Wire_names_round_trip(Resolution resolution, string wireName)
    {
        Assert.Equal(wireName, resolution.ToWireName());
        Assert.True(ResolutionExtensions.TryParseWireName(wireName, out var parsed));
        Assert.Equal(resolution, parsed);
    }

    [Theory]
    [InlineData("1w")]
    [InlineData("1M")]
    [InlineData("60")]
    [InlineData("minute")]
    [InlineData("")]
    [InlineData(null)]
    public void Unknown_wire_names_are_refused(string? wireName) =>
        Assert.False(ResolutionExtensions.TryParseWireName(wireName, out _));

    [Fact]
    public void Every_resolution_is_listed_finest_first()
    {
        Assert.Equal([Resolution.Minute, Resolution.Hour, Resolution.Day], ResolutionExtensions.All);
        Assert.Equal(Enum.GetValues<Resolution>().Length, ResolutionExtensions.All.Count);
    }
}
