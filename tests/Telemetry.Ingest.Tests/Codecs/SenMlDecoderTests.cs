using Telemetry.Core.Readings;
using Telemetry.Core.Vitals;
using Telemetry.Ingest.Codecs;

namespace Telemetry.Ingest.Tests.Codecs;

public sealed class SenMlDecoderTests
{
    private static readonly long NowSeconds = Wearable.Now.ToUnixTimeSeconds();

    [Fact]
    public void Base_name_time_and_unit_carry_over_to_later_records()
    {
        var builder = Wearable.NewBuilder();
        var payload = $$"""
            [
              {"bn":"urn:dev:mac:0024befffe804ff1:","bt":{{NowSeconds - 60}},"bu":"[degF]","n":"body_temperature","v":98.6},
              {"n":"temperature","t":30,"v":100.4},
              {"n":"8867-4","u":"/min","t":45.5,"v":72}
            ]
            """;

        Assert.True(Wearable.Decode(builder, payload, out var format, out var error), error);

        Assert.Equal(PayloadFormat.SenMl, format);
        Assert.Equal(0, builder.RejectedCount);
        var readings = builder.ToArray();
        Assert.Equal(3, readings.Length);
        AssertReading(readings[0], VitalKind.BodyTemperature, Wearable.NowMs - 60_000, 37.0);
        AssertReading(readings[1], VitalKind.BodyTemperature, Wearable.NowMs - 30_000, 38.0);
        AssertReading(readings[2], VitalKind.HeartRate, Wearable.NowMs - 14_500, 72);
    }

    [Fact]
    public void A_field_given_as_null_is_absent()
    {
        var builder = Wearable.NewBuilder();
        var payload = $$"""
            [
              {"bn":"watch-1:","bt":{{NowSeconds}},"bu":"/min","bv":null,"n":"heart_rate","u":null,"t":null,"v":72},
              {"bn":null,"bt":null,"bu":null,"n":"heart_rate","u":null,"t":-1,"v":71},
              {"n":"heart_rate","t":-2,"v":null}
            ]
            """;

        Assert.True(Wearable.Decode(builder, payload, out _, out var error), error);

        Assert.Equal(
            [new VitalReading(VitalKind.HeartRate, Wearable.NowMs, 72), new VitalReading(VitalKind.HeartRate, Wearable.NowMs - 1_000, 71)],
            builder.ToArray());
        Assert.Equal(1, builder.RejectedFor(RejectReason.MissingValue));
    }

    [Theory]
    [InlineData(".0007", 0)]
    [InlineData(".123", 123)]
    [InlineData(".1239", 123)]
    [InlineData(".9995", 999)]
    public void A_time_is_cut_to_its_millisecond_as_the_same_time_in_a_JSON_batch_is(string fraction, int milliseconds)
    {
        var senMl = Wearable.NewBuilder();
        var json = Wearable.NewBuilder();
        var iso = DateTimeOffset.FromUnixTimeSeconds(NowSeconds).UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ss", System.Globalization.CultureInfo.InvariantCulture) + fraction + "Z";

        Assert.True(Wearable.Decode(senMl, $$"""[{"bver":null,"bt":{{NowSeconds}}{{fraction}},"n":"heart_rate","v":72}]""", out _, out var error), error);
        Assert.True(Wearable.Decode(json, $$"""{"readings":[{"kind":"heart_rate","time":"{{iso}}","value":72}]}""", out _, out error), error);

        Assert.Equal((NowSeconds * 1000) + milliseconds, Assert.Single(senMl.ToArray()).TimestampMs);
        Assert.Equal(senMl.ToArray(), json.ToArray());
    }

    [Fact]
    public void A_base_name_may_hold_the_longest_device_id()
    {
        var builder = Wearable.NewBuilder();
        var payload = $$"""[{"bn":"urn:dev:{{new string('w', Telemetry.Core.Identifier.MaxLength)}}:","bt":{{NowSeconds}},"n":"heart_rate","v":72}]""";

        Assert.True(Wearable.Decode(builder, payload, out _, out var error), error);

        Assert.Equal([new VitalReading(VitalKind.HeartRate, Wearable.NowMs, 72)], builder.ToArray());
    }

    [Fact]
    public void A_base_value_is_added_to_every_value()
    {
        var builder = Wearable.NewBuilder();
        var payload = $$"""
            [{"bn":"watch-1/","bt":{{NowSeconds}},"bv":60,"n":"heart_rate","v":12},{"n":"heart_rate","t":-1,"v":-2}]
            """;

        Assert.True(Wearable.Decode(builder, payload, out _, out var error), error);

        Assert.Equal(
            [new VitalReading(VitalKind.HeartRate, Wearable.NowMs, 72), new VitalReading(VitalKind.HeartRate, Wearable.NowMs - 1_000, 58)],
            builder.ToArray());
    }

    [Fact]
    public void The_base_name_alone_can_name_the_vital()
    {
        var builder = Wearable.NewBuilder();
        var payload = $$"""[{"bn":"watch-1:spo2","bu":"1","t":{{NowSeconds}},"v":0.96}]""";

        Assert.True(Wearable.Decode(builder, payload, out _, out var error), error);

        var reading = Assert.Single(builder.ToArray());
        AssertReading(reading, VitalKind.OxygenSaturation, Wearable.NowMs, 96);
    }

    [Theory]
    [InlineData(0, 0)]
    [InlineData(-90, -90_000)]
    [InlineData(-0.25, -250)]
    [InlineData(120, 120_000)]
    public void Times_below_2_to_the_28_are_relative_to_now(double t, long offsetMs)
    {
        var builder = Wearable.NewBuilder();
        var payload = $$"""[{"n":"heart_rate","t":{{t.ToString(System.Globalization.CultureInfo.InvariantCulture)}},"v":72}]""";

        Assert.True(Wearable.Decode(builder, payload, out _, out var error), error);

        Assert.Equal([new VitalReading(VitalKind.HeartRate, Wearable.NowMs + offsetMs, 72)], builder.ToArray());
    }

    [Fact]
    public void Relative_times_follow_the_clock_when_the_payload_is_decoded()
    {
        var builder = Wearable.NewBuilder(out var clock);
        clock.Advance(TimeSpan.FromSeconds(90));

        Assert.True(Wearable.Decode(builder, """[{"n":"heart_rate","t":-30,"v":72}]""", out _, out var error), error);

        Assert.Equal(Wearable.NowMs + 60_000, Assert.Single(builder.ToArray()).TimestampMs);
        Assert.Equal(Wearable.NowMs + 90_000, builder.NowMs);
    }

    [Fact]
    public void Bad_records_are_counted_and_their_neighbours_kept()
    {
        var builder = Wearable.NewBuilder();
        var payload = $$"""
            [
              {"bn":"watch-1:","bt":{{NowSeconds}}},
              {"n":"heart_rate","v":72},
              {"n":"blood_pressure","v":120},
              {"n":42,"v":72},
              {"n":"heart_rate","u":"Hz","v":1.2},
              {"n":"heart_rate","u":["/min"],"v":72},
              {"n":"heart_rate","vs":"high"},
              {"n":"heart_rate","v":"72"},
              {"n":"heart_rate","t":"soon","v":72},
              {"n":"spo2","v":101},
              {"n":"heart_rate","t":3600,"v":72},
              {"n":"heart_rate","t":-3000000,"v":72},
              {"n":"steps","u":"count","t":-60,"v":1200}
            ]
            """;

        Assert.True(Wearable.Decode(builder, payload, out _, out var error), error);

        Assert.Equal(
            [new VitalReading(VitalKind.HeartRate, Wearable.NowMs, 72), new VitalReading(VitalKind.Steps, Wearable.NowMs - 60_000, 1200)],
            builder.ToArray());
        Assert.Equal(10, builder.RejectedCount);
        Assert.Equal(2, builder.RejectedFor(RejectReason.UnknownKind));
        Assert.Equal(2, builder.RejectedFor(RejectReason.UnknownUnit));
        Assert.Equal(3, builder.RejectedFor(RejectReason.MissingValue));
        Assert.Equal(1, builder.RejectedFor(RejectReason.Implausible));
        Assert.Equal(1, builder.RejectedFor(RejectReason.FutureTimestamp));
        Assert.Equal(1, builder.RejectedFor(RejectReason.TooOld));
    }

    [Fact]
    public void A_base_time_or_value_that_cannot_be_read_refuses_every_record_after_it_instead_of_reading_them_against_zero()
    {
        var builder = Wearable.NewBuilder();
        var payload = $$"""
            [
              {"n":"heart_rate","bt":{{NowSeconds}},"v":70},
              {"bn":"watch-1:","bt":"{{NowSeconds}}"},
              {"n":"heart_rate","v":72},
              {"n":"heart_rate","t":60,"v":73},
              {"bt":{{NowSeconds - 60}},"n":"heart_rate","v":74}
            ]
            """;

        Assert.True(Wearable.Decode(builder, payload, out _, out var error), error);

        // Until a base time that can be read replaces it.
        Assert.Equal([new VitalReading(VitalKind.HeartRate, Wearable.NowMs, 70), new VitalReading(VitalKind.HeartRate, Wearable.NowMs - 60_000, 74)], builder.ToArray());
        Assert.Equal(3, builder.RejectedFor(RejectReason.MalformedRecord));
    }

    [Fact]
    public void A_base_unit_that_cannot_be_read_refuses_the_records_that_would_take_it_not_those_with_their_own()
    {
        var builder = Wearable.NewBuilder();
        var payload = """
            [
              {"bu":"\ud800","n":"body_temperature","v":98.6},
              {"n":"body_temperature","u":"Cel","v":37.2},
              {"n":"body_temperature","v":99.1}
            ]
            """;

        Assert.True(Wearable.Decode(builder, payload, out _, out var error), error);

        Assert.Equal(37.2, Assert.Single(builder.ToArray()).Value);
        Assert.Equal((2, 2), (builder.RejectedCount, builder.RejectedFor(RejectReason.UnknownUnit)));
    }

    [Fact]
    public void A_base_name_or_unit_that_is_not_text_refuses_its_record_as_malformed_not_as_missing_its_value()
    {
        var builder = Wearable.NewBuilder();
        var payload = """
            [
              {"bn":42,"n":"heart_rate","v":72},
              {"bu":["/min"],"n":"heart_rate","u":"/min","v":73},
              {"n":"heart_rate","u":"/min","v":74}
            ]
            """;

        Assert.True(Wearable.Decode(builder, payload, out _, out var error), error);

        // The third names its own unit: the base unit that could not be read is not the one it takes.
        Assert.Equal(74, Assert.Single(builder.ToArray()).Value);
        Assert.Equal((2, 2), (builder.RejectedCount, builder.RejectedFor(RejectReason.MalformedRecord)));
    }

    [Theory]
    [InlineData("""[{"n":"heart_rate","v":72,"rate_":1}]""", "must-understand")]
    [InlineData("""[{"bver":11,"n":"heart_rate","v":72}]""", "bver")]
    public void A_pack_with_a_field_that_must_be_understood_or_a_later_version_is_refused(string payload, string named)
    {
        var builder = Wearable.NewBuilder();

        Assert.False(Wearable.Decode(builder, payload, out _, out var error));

        Assert.Contains(named, error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("""[{"n":"heart_rate","v":72}""")]
    [InlineData("""[{"n":"heart_rate","v":72},""")]
    [InlineData("""[{"n":"heart_rate" "v":72}]""")]
    public void Truncated_or_broken_SenML_is_refused_and_keeps_nothing(string payload)
    {
        var builder = Wearable.NewBuilder();

        Assert.False(Wearable.Decode(builder, payload, out var format, out var error));

        Assert.Equal(PayloadFormat.SenMl, format);
        Assert.StartsWith("malformed SenML", error, StringComparison.Ordinal);
        Assert.Equal(0, builder.Count);
    }

    [Fact]
    public void A_SenML_entry_that_is_not_a_record_is_refused_alone_and_its_neighbours_stored()
    {
        var builder = Wearable.NewBuilder();

        Assert.True(Wearable.Decode(builder, """[{"n":"heart_rate","v":72},72,[{"n":"x"}],{"n":"heart_rate","v":73,"t":-1}]""", out _, out var error), error);

        Assert.Equal(2, builder.Count);
        Assert.Equal(2, builder.RejectedFor(RejectReason.MalformedRecord));
    }

    [Fact]
    public void An_object_is_not_SenML()
    {
        var builder = Wearable.NewBuilder();

        Assert.False(SenMlDecoder.TryDecode(Wearable.Utf8("""{"n":"heart_rate","v":72}"""), builder, out var error));

        Assert.Equal("SenML must be a JSON array of records", error);
    }

    [Fact]
    public void Content_after_the_SenML_pack_is_refused()
    {
        var builder = Wearable.NewBuilder();

        Assert.False(Wearable.Decode(builder, """[{"n":"heart_rate","v":72}] [{"n":"heart_rate","v":75}]""", out _, out var error));

        Assert.StartsWith("malformed SenML", error, StringComparison.Ordinal);
        Assert.Equal(0, builder.Count);
    }

    private static void AssertReading(VitalReading reading, VitalKind kind, long timestampMs, double value)
    {
        Assert.Equal(kind, reading.Kind);
        Assert.Equal(timestampMs, reading.TimestampMs);
        Assert.Equal(value, reading.Value, 1e-6);
    }
}
