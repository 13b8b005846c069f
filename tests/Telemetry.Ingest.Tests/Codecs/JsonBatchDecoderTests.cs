using System.Text;
using Telemetry.Core.Readings;
using Telemetry.Core.Vitals;
using Telemetry.Ingest.Codecs;

namespace Telemetry.Ingest.Tests.Codecs;

public sealed class JsonBatchDecoderTests
{
    private static readonly string At = Wearable.Time(TimeSpan.Zero);

    [Fact]
    public void A_batch_decodes_into_canonical_readings_and_keeps_its_sequence()
    {
        var builder = Wearable.NewBuilder();
        var payload = $$"""
            {
              "seq": 42,
              "readings": [
                { "kind": "heart_rate", "time": "{{At}}", "value": 72, "unit": "/min" },
                { "kind": "8310-5", "time": "{{Wearable.Time(TimeSpan.FromSeconds(-30))}}", "value": 98.6, "unit": "[degF]" },
                { "kind": "glucose", "time": "{{Wearable.Time(TimeSpan.FromMinutes(-1))}}", "value": 5.5, "unit": "mmol/L" },
                { "kind": "spo2", "time": "{{Wearable.Time(TimeSpan.FromMinutes(-2))}}", "value": 0.97, "unit": "1" }
              ]
            }
            """;

        Assert.True(Wearable.Decode(builder, payload, out var format, out var error), error);

        Assert.Equal(PayloadFormat.Json, format);
        Assert.Equal(42UL, builder.Sequence);
        Assert.Equal(0, builder.RejectedCount);
        var readings = builder.ToArray();
        Assert.Equal(4, readings.Length);
        Assert.Equal(new VitalReading(VitalKind.HeartRate, Wearable.NowMs, 72), readings[0]);
        AssertReading(readings[1], VitalKind.BodyTemperature, Wearable.NowMs - 30_000, 37.0);
        AssertReading(readings[2], VitalKind.BloodGlucose, Wearable.NowMs - 60_000, 99.085745);
        AssertReading(readings[3], VitalKind.OxygenSaturation, Wearable.NowMs - 120_000, 97.0);
    }

    [Fact]
    public void Units_are_read_in_any_case_and_in_their_everyday_spellings()
    {
        var builder = Wearable.NewBuilder();
        var payload = $$"""
            {"readings":[
              { "kind": "glucose", "time": "{{At}}", "value": 99, "unit": "mg/dl" },
              { "kind": "heart_rate", "time": "{{At}}", "value": 72, "unit": "BPM" },
              { "kind": "temperature", "time": "{{At}}", "value": 98.6, "unit": "°F" },
              { "kind": "weight", "time": "{{At}}", "value": 154, "unit": "lbs" }
            ]}
            """;

        Assert.True(Wearable.Decode(builder, payload, out _, out var error), error);

        Assert.Equal(0, builder.RejectedCount);
        var readings = builder.ToArray();
        AssertReading(readings[0], VitalKind.BloodGlucose, Wearable.NowMs, 99);
        AssertReading(readings[1], VitalKind.HeartRate, Wearable.NowMs, 72);
        AssertReading(readings[2], VitalKind.BodyTemperature, Wearable.NowMs, 37.0);
        AssertReading(readings[3], VitalKind.BodyWeight, Wearable.NowMs, 69.85322498);
    }

    [Fact]
    public void An_optional_field_given_as_null_is_absent_and_a_required_one_missing()
    {
        var builder = Wearable.NewBuilder();
        var payload = $$"""
            {
              "seq": null,
              "readings": [
                { "kind": "heart_rate", "time": "{{At}}", "value": 72, "unit": null },
                { "kind": "heart_rate", "time": "{{At}}", "value": null, "unit": "/min" },
                { "kind": null, "time": "{{At}}", "value": 72 }
              ]
            }
            """;

        Assert.True(Wearable.Decode(builder, payload, out _, out var error), error);

        Assert.Equal(0UL, builder.Sequence);
        Assert.Equal([new VitalReading(VitalKind.HeartRate, Wearable.NowMs, 72)], builder.ToArray());
        Assert.Equal(1, builder.RejectedFor(RejectReason.MissingValue));
        Assert.Equal(1, builder.RejectedFor(RejectReason.UnknownKind));
    }

    [Theory]
    [InlineData("2026-11-24T09:59:00Z", -60_000)]
    [InlineData("2026-11-24T09:59:00", -60_000)]
    [InlineData("2026-11-24T09:59:00.250", -59_750)]
    [InlineData("2026-11-24T11:59:00+02:00", -60_000)]
    [InlineData("2026-11-24T04:59:00-05:00", -60_000)]
    [InlineData("2026-11-24", -36_000_000)]
    public void A_time_is_read_with_its_offset_and_as_utc_without_one(string time, long fromNowMs)
    {
        var builder = Wearable.NewBuilder();

        Assert.True(Wearable.Decode(builder, $$"""{"seq":1,"readings":[{"kind":"heart_rate","time":"{{time}}","value":72}]}""", out _, out var error), error);

        Assert.Equal(Wearable.NowMs + fromNowMs, Assert.Single(builder.ToArray()).TimestampMs);
    }

    [Fact]
    public void A_missing_unit_means_the_canonical_unit_and_unknown_fields_are_ignored()
    {
        var builder = Wearable.NewBuilder();
        var payload = $$"""
            {"device":{"model":"w1","fw":[1,2]},"readings":[{"note":"after run","kind":"body_weight","time":"{{At}}","value":70.5,"extra":{"a":[1]} }],"v":2}
            """;

        Assert.True(Wearable.Decode(builder, payload, out _, out var error), error);

        Assert.Equal([new VitalReading(VitalKind.BodyWeight, Wearable.NowMs, 70.5)], builder.ToArray());
        Assert.Equal(0UL, builder.Sequence);
    }

    [Fact]
    public void A_time_with_an_offset_is_stored_as_UTC_milliseconds()
    {
        var builder = Wearable.NewBuilder();
        var payload = """{"readings":[{"kind":"hr","time":"2026-11-24T10:59:30.250+01:00","value":64}]}""";

        Assert.True(Wearable.Decode(builder, payload, out _, out var error), error);

        Assert.Equal([new VitalReading(VitalKind.HeartRate, Wearable.NowMs - 29_750, 64)], builder.ToArray());
    }

    [Fact]
    public void A_payload_split_across_segments_decodes_the_same()
    {
        var payload = $$"""{"seq":7,"readings":[{"kind":"heart_rate","time":"{{At}}","value":72.5,"unit":"beats/min"},{"kind":"weight","time":"{{At}}","value":150,"unit":"lb"}]}""";
        var bytes = Encoding.UTF8.GetBytes(payload);
        var builder = Wearable.NewBuilder();

        // Split inside "heart_rate" so a property value straddles the segment boundary.
        var at = payload.IndexOf("heart_rate", StringComparison.Ordinal) + 5;
        var sequence = Segment.Split(bytes, at);
        Assert.False(sequence.IsSingleSegment);

        Assert.True(PayloadDecoder.TryDecode(sequence, builder, out var format, out var error), error);

        Assert.Equal(PayloadFormat.Json, format);
        Assert.Equal(7UL, builder.Sequence);
        var readings = builder.ToArray();
        Assert.Equal(2, readings.Length);
        Assert.Equal(new VitalReading(VitalKind.HeartRate, Wearable.NowMs, 72.5), readings[0]);
        AssertReading(readings[1], VitalKind.BodyWeight, Wearable.NowMs, 68.0388555);
    }

    [Fact]
    public void Every_split_point_of_a_payload_gives_the_same_readings()
    {
        var payload = $$"""{"seq":3,"readings":[{"kind":"8867-4","time":"{{At}}","value":61,"unit":"bpm"}]}""";
        var bytes = Encoding.UTF8.GetBytes(payload);
        var builder = Wearable.NewBuilder();

        for (var at = 1; at < bytes.Length; at++)
        {
            Assert.True(PayloadDecoder.TryDecode(Segment.Split(bytes, at), builder, out _, out var error), $"split at {at}: {error}");
            Assert.Equal([new VitalReading(VitalKind.HeartRate, Wearable.NowMs, 61)], builder.ToArray());
            Assert.Equal(3UL, builder.Sequence);
        }
    }

    [Fact]
    public void An_entry_that_is_not_a_reading_is_refused_alone_and_its_neighbours_stored()
    {
        var builder = Wearable.NewBuilder();

        Assert.True(Wearable.Decode(builder, $$"""{"readings":[72,{"kind":"heart_rate","time":"{{At}}","value":61},null,[1,2],"x"]}""", out _, out var error), error);

        Assert.Equal(1, builder.Count);
        Assert.Equal(4, builder.RejectedFor(RejectReason.MalformedRecord));
    }

    [Theory]
    [InlineData("""{"seq":1,"readings":[{"kind":"heart_rate","value":72""", "malformed JSON batch")]
    [InlineData("""{"seq":1,"readings":[]""", "malformed JSON batch")]
    [InlineData("""{"readings":{"kind":"heart_rate"}}""", "\"readings\" must be an array")]
    [InlineData("""{"seq":1}""", "a JSON batch needs a \"readings\" array")]
    [InlineData("""{}""", "a JSON batch needs a \"readings\" array")]
    [InlineData("""{"seq":-1,"readings":[]}""", "\"seq\" must be a non-negative integer")]
    [InlineData("""{"seq":"42","readings":[]}""", "\"seq\" must be a non-negative integer")]
    [InlineData("""{"seq":1.5,"readings":[]}""", "\"seq\" must be a non-negative integer")]
    [InlineData("""{"readings":[}""", "malformed JSON batch")]
    public void A_malformed_batch_is_refused_with_a_reason(string payload, string expectedError)
    {
        var builder = Wearable.NewBuilder();

        Assert.False(Wearable.Decode(builder, payload, out var format, out var error));

        Assert.Equal(PayloadFormat.Json, format);
        Assert.NotNull(error);
        Assert.StartsWith(expectedError, error, StringComparison.Ordinal);
    }

    [Fact]
    public void A_truncated_batch_keeps_none_of_the_readings_before_the_cut()
    {
        var builder = Wearable.NewBuilder();
        var payload = $$"""{"seq":5,"readings":[{"kind":"heart_rate","time":"{{At}}","value":72},{"kind":"heart_rate","time":"{{At}}","val""";

        Assert.False(Wearable.Decode(builder, payload, out _, out var error));

        Assert.Contains("malformed JSON batch", error, StringComparison.Ordinal);
        Assert.Equal(0, builder.Count);
        Assert.True(builder.Readings.IsEmpty);
        Assert.Equal(0UL, builder.Sequence);
    }

    [Fact]
    public void An_array_is_not_a_JSON_batch()
    {
        var builder = Wearable.NewBuilder();

        Assert.False(JsonBatchDecoder.TryDecode(Wearable.Utf8("""[{"kind":"heart_rate"}]"""), builder, out var error));

        Assert.Equal("a JSON batch must be an object", error);
    }

    [Fact]
    public void A_reading_whose_value_is_an_array_is_rejected_alone_and_its_neighbours_are_kept()
    {
        var builder = Wearable.NewBuilder();
        var payload = $$"""
            {"readings":[
              {"kind":"heart_rate","time":"{{At}}","value":[72]},
              {"kind":"heart_rate","time":"{{At}}","value":75}
            ]}
            """;

        Assert.True(Wearable.Decode(builder, payload, out _, out var error), error);

        Assert.Equal([new VitalReading(VitalKind.HeartRate, Wearable.NowMs, 75)], builder.ToArray());
        Assert.Equal(1, builder.RejectedFor(RejectReason.MissingValue));
    }

    [Fact]
    public void A_reading_whose_time_is_an_object_is_rejected_alone_and_its_neighbours_are_kept()
    {
        var builder = Wearable.NewBuilder();
        var payload = $$"""
            {"readings":[
              {"kind":"heart_rate","time":{"epoch":1795514400},"value":72},
              {"kind":"heart_rate","time":"{{At}}","value":75}
            ]}
            """;

        Assert.True(Wearable.Decode(builder, payload, out _, out var error), error);

        Assert.Equal([new VitalReading(VitalKind.HeartRate, Wearable.NowMs, 75)], builder.ToArray());
        Assert.Equal(1, builder.RejectedFor(RejectReason.MissingValue));
    }

    [Fact]
    public void Two_batches_concatenated_in_one_payload_are_refused_rather_than_half_stored()
    {
        var builder = Wearable.NewBuilder();
        var payload = $$"""
            {"seq":1,"readings":[{"kind":"heart_rate","time":"{{At}}","value":72}]}
            {"seq":2,"readings":[{"kind":"heart_rate","time":"{{At}}","value":75}]}
            """;

        Assert.False(Wearable.Decode(builder, payload, out _, out var error));

        Assert.StartsWith("malformed JSON batch", error, StringComparison.Ordinal);
        Assert.Equal(0, builder.Count);
    }

    private static void AssertReading(VitalReading reading, VitalKind kind, long timestampMs, double value)
    {
        Assert.Equal(kind, reading.Kind);
        Assert.Equal(timestampMs, reading.TimestampMs);
        Assert.Equal(value, reading.Value, 1e-6);
    }
}
