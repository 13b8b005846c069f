using Telemetry.Core.Readings;
using Telemetry.Core.Vitals;
using Telemetry.Ingest.Codecs;

namespace Telemetry.Ingest.Tests.Codecs;

public sealed class ReadingValidationTests
{
    private static readonly string At = Wearable.Time(TimeSpan.Zero);

    [Fact]
    public void Good_readings_are_kept_and_bad_ones_counted_by_reason()
    {
        var builder = Wearable.NewBuilder();
        var payload = $$"""
            {"seq":11,"readings":[
              {"kind":"heart_rate","time":"{{At}}","value":72},
              {"kind":"mood","time":"{{At}}","value":120},
              {"time":"{{At}}","value":120},
              {"kind":"heart_rate","time":"{{At}}","value":72,"unit":"Hz"},
              {"kind":"heart_rate","time":"{{At}}","value":72,"unit":7},
              {"kind":"heart_rate","time":"{{At}}","value":400},
              {"kind":"spo2","time":"{{At}}","value":0.4,"unit":"1"},
              {"kind":"heart_rate","time":"{{Wearable.Time(TimeSpan.FromMinutes(11))}}","value":72},
              {"kind":"heart_rate","time":"{{Wearable.Time(TimeSpan.FromDays(-31))}}","value":72},
              {"kind":"heart_rate","time":"{{At}}"},
              {"kind":"heart_rate","time":"{{At}}","value":"72"},
              {"kind":"heart_rate","value":72},
              {"kind":"heart_rate","time":"yesterday","value":72},
              {"kind":"body_temperature","time":"{{At}}","value":98.6,"unit":"[degF]"}
            ]}
            """;

        Assert.True(Wearable.Decode(builder, payload, out _, out var error), error);

        var readings = builder.ToArray();
        Assert.Equal(2, readings.Length);
        Assert.Equal(new VitalReading(VitalKind.HeartRate, Wearable.NowMs, 72), readings[0]);
        Assert.Equal(VitalKind.BodyTemperature, readings[1].Kind);
        Assert.Equal(37.0, readings[1].Value, 1e-9);
        Assert.Equal(11UL, builder.Sequence);
        Assert.Equal(12, builder.RejectedCount);
        Assert.Equal(2, builder.RejectedFor(RejectReason.UnknownKind));
        Assert.Equal(2, builder.RejectedFor(RejectReason.UnknownUnit));
        Assert.Equal(2, builder.RejectedFor(RejectReason.Implausible));
        Assert.Equal(1, builder.RejectedFor(RejectReason.FutureTimestamp));
        Assert.Equal(1, builder.RejectedFor(RejectReason.TooOld));
        Assert.Equal(4, builder.RejectedFor(RejectReason.MissingValue));
    }

    [Fact]
    public void A_value_that_overflows_in_its_unit_conversion_is_implausible_and_not_quarantined_as_infinity()
    {
        var builder = Wearable.NewBuilder();
        var payload = $$"""
            {"readings":[
              {"kind":"heart_rate","time":"{{At}}","value":400},
              {"kind":"spo2","time":"{{At}}","value":1e307,"unit":"1"},
              {"kind":"heart_rate","time":"{{At}}","value":72}
            ]}
            """;

        Assert.True(Wearable.Decode(builder, payload, out _, out var error), error);

        Assert.Equal([new VitalReading(VitalKind.HeartRate, Wearable.NowMs, 72)], builder.ToArray());
        Assert.Equal(2, builder.RejectedFor(RejectReason.Implausible));
        Assert.Equal([new VitalReading(VitalKind.HeartRate, Wearable.NowMs, 400)], builder.Quarantined.ToArray());
    }

    [Theory]
    [InlineData(600_000, true)]
    [InlineData(600_001, false)]
    [InlineData(-2_592_000_000, true)]
    [InlineData(-2_592_000_001, false)]
    public void Readings_up_to_10_minutes_ahead_and_30_days_back_are_accepted(long offsetMs, bool accepted)
    {
        var builder = Wearable.NewBuilder();
        var payload = $$"""{"readings":[{"kind":"heart_rate","time":"{{Wearable.Time(TimeSpan.FromMilliseconds(offsetMs))}}","value":72}]}""";

        Assert.True(Wearable.Decode(builder, payload, out _, out var error), error);

        Assert.Equal(accepted ? 1 : 0, builder.Count);
        Assert.Equal(accepted ? 0 : 1, builder.RejectedFor(offsetMs > 0 ? RejectReason.FutureTimestamp : RejectReason.TooOld));
    }

    [Fact]
    public void A_value_plausible_only_after_conversion_is_accepted()
    {
        var builder = Wearable.NewBuilder();
        var payload = $$"""
            {"readings":[
              {"kind":"body_temperature","time":"{{At}}","value":98.6},
              {"kind":"body_temperature","time":"{{At}}","value":98.6,"unit":"degF"}
            ]}
            """;

        Assert.True(Wearable.Decode(builder, payload, out _, out var error), error);

        Assert.Equal(1, builder.Count);
        Assert.Equal(37.0, builder.Readings[0].Value, 1e-9);
        Assert.Equal(1, builder.RejectedFor(RejectReason.Implausible));
    }

    [Fact]
    public void Rejects_are_described_in_one_sentence_in_reason_order()
    {
        var builder = Wearable.NewBuilder();
        var payload = $$"""
            {"readings":[
              {"kind":"heart_rate","time":"{{At}}","value":400},
              {"kind":"mood","time":"{{At}}","value":120},
              {"kind":"heart_rate","time":"{{At}}","value":500}
            ]}
            """;

        Assert.True(Wearable.Decode(builder, payload, out _, out _));

        Assert.Equal("3 readings rejected: 1 unknown vital kind (or none given), 2 value outside the plausible range", builder.DescribeRejects());
    }

    [Fact]
    public void A_single_reject_is_described_in_the_singular()
    {
        var builder = Wearable.NewBuilder();
        var payload = $$"""{"readings":[{"kind":"heart_rate","time":"{{Wearable.Time(TimeSpan.FromHours(1))}}","value":72}]}""";

        Assert.True(Wearable.Decode(builder, payload, out _, out _));

        Assert.Equal("1 reading rejected: 1 timestamp too far in the future", builder.DescribeRejects());
    }

    [Fact]
    public void Every_reject_reason_has_its_own_words()
    {
        var builder = Wearable.NewBuilder();
        foreach (var reason in Enum.GetValues<RejectReason>())
        {
            builder.Reject(reason);
        }

        Assert.Equal(
            "8 readings rejected: 1 unknown vital kind (or none given), 1 unit not convertible to the vital's unit, 1 missing or non-numeric value or time (a JSON batch's time is ISO 8601 text), "
            + "1 value outside the plausible range, 1 timestamp too far in the future, 1 timestamp older than the backfill horizon, "
            + "1 record that could not be read, 1 with another value already stored for the same vital and time (the first value stands)",
            builder.DescribeRejects());
        Assert.Equal(
            ["unknown_kind", "unknown_unit", "missing_value", "implausible", "future_timestamp", "too_old", "malformed_record", "conflict"],
            Enum.GetValues<RejectReason>().Select(reason => reason.ToTag()));
    }

    [Fact]
    public void A_batch_without_rejects_has_no_description()
    {
        var builder = Wearable.NewBuilder();

        Assert.True(Wearable.Decode(builder, $$"""{"readings":[{"kind":"hr","time":"{{At}}","value":72}]}""", out _, out _));

        Assert.Null(builder.DescribeRejects());
    }

    [Fact]
    public void A_builder_kept_between_payloads_gives_back_what_a_large_one_grew_it_to()
    {
        var builder = Wearable.NewBuilder();
        for (var i = 0; i < 10_000; i++)
        {
            builder.Add(VitalCatalogue.Get(VitalKind.HeartRate), VitalCatalogue.Get(VitalKind.HeartRate).FindUnit("/min"u8), Wearable.NowMs - i, 72);
        }

        Assert.True(builder.Capacity >= 10_000);

        // The next large payload keeps the room; a small one after it lets it go.
        builder.Reset();
        builder.Add(VitalCatalogue.Get(VitalKind.HeartRate), VitalCatalogue.Get(VitalKind.HeartRate).FindUnit("/min"u8), Wearable.NowMs, 72);
        Assert.True(builder.Capacity >= 10_000);
        builder.Reset();

        Assert.Equal(ReadingBatchBuilder.KeptCapacity, builder.Capacity);
        Assert.Equal(0, builder.Count);
    }
}
