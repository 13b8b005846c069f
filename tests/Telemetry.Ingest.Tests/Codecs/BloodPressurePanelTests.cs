using Google.Protobuf;
using Telemetry.Core.Readings;
using Telemetry.Core.Vitals;
using Telemetry.Ingest.Codecs;
using Telemetry.Protos;

namespace Telemetry.Ingest.Tests.Codecs;

/// <summary>Blood pressure arrives as a pair and is stored as its systolic and diastolic readings.</summary>
public sealed class BloodPressurePanelTests
{
    private static readonly string At = Wearable.Time(TimeSpan.FromMinutes(-1));

    [Theory]
    [InlineData("blood_pressure", "mm[Hg]", 120, 80)]
    [InlineData("85354-9", "kPa", 15.9987, 10.6658)]
    public void A_json_pair_becomes_a_systolic_and_a_diastolic_reading(string kind, string unit, double systolic, double diastolic)
    {
        var builder = Wearable.NewBuilder();

        var decoded = Wearable.Decode(builder, $$"""{"readings":[{"kind":"{{kind}}","time":"{{At}}","value":[{{systolic}},{{diastolic}}],"unit":"{{unit}}"}]}""", out _, out var error);

        Assert.True(decoded, error);
        var readings = builder.ToArray();
        Assert.Equal([VitalKind.SystolicPressure, VitalKind.DiastolicPressure], readings.Select(r => r.Kind));
        Assert.Equal(120, readings[0].Value, tolerance: 0.01);
        Assert.Equal(80, readings[1].Value, tolerance: 0.01);
        Assert.Equal(readings[0].TimestampMs, readings[1].TimestampMs);
    }

    [Theory]
    [InlineData("\"value\":120")]
    [InlineData("\"value\":[120]")]
    [InlineData("\"value\":[120,80,60]")]
    [InlineData("\"value\":[120,\"80\"]")]
    public void A_panel_without_exactly_two_numbers_is_refused_alone(string value)
    {
        var builder = Wearable.NewBuilder();
        var payload = $$"""{"readings":[{"kind":"blood_pressure","time":"{{At}}",{{value}}},{"kind":"heart_rate","time":"{{At}}","value":70}]}""";

        Assert.True(Wearable.Decode(builder, payload, out _, out var error), error);

        Assert.Equal([VitalKind.HeartRate], builder.ToArray().Select(r => r.Kind));
        Assert.Equal(1, builder.RejectedFor(RejectReason.MissingValue));
    }

    [Theory]
    [InlineData(80, 120)]
    [InlineData(100, 100)]
    [InlineData(120, 250)]
    [InlineData(350, 80)]
    public void A_pair_reversed_or_with_either_part_implausible_is_kept_by_neither_part_and_quarantined_whole(double systolic, double diastolic)
    {
        var builder = Wearable.NewBuilder();
        var payload = $$"""{"readings":[{"kind":"blood_pressure","time":"{{At}}","value":[{{systolic}},{{diastolic}}]},{"kind":"heart_rate","time":"{{At}}","value":70}]}""";

        Assert.True(Wearable.Decode(builder, payload, out _, out var error), error);

        Assert.Equal([VitalKind.HeartRate], builder.ToArray().Select(r => r.Kind));
        Assert.Equal(2, builder.RejectedFor(RejectReason.Implausible));
        Assert.Equal([(VitalKind.SystolicPressure, systolic), (VitalKind.DiastolicPressure, diastolic)], builder.Quarantined.Select(r => (r.Kind, r.Value)));
    }

    [Fact]
    public void A_protobuf_pair_reversed_is_refused_and_its_neighbours_kept()
    {
        var builder = Wearable.NewBuilder();
        var series = new VitalSeries { Kind = "blood_pressure", TimeDeltasMs = { 0, 60_000 }, Values = { 80, 120, 125, 82 } };
        var payload = new VitalBatch { BaseTimeMs = Wearable.NowMs - 120_000, Series = { series } }.ToByteArray();

        Assert.True(PayloadDecoder.TryDecode(new(payload), builder, out _, out var error), error);

        Assert.Equal(
            [
                new VitalReading(VitalKind.SystolicPressure, Wearable.NowMs - 60_000, 125),
                new VitalReading(VitalKind.DiastolicPressure, Wearable.NowMs - 60_000, 82),
            ],
            builder.ToArray());
        Assert.Equal(2, builder.RejectedFor(RejectReason.Implausible));
    }

    [Fact]
    public void A_pair_refused_for_two_reasons_counts_each_part_for_its_own_and_quarantines_the_implausible_one()
    {
        var builder = Wearable.NewBuilder();
        var series = new VitalSeries { Kind = "blood_pressure", TimeDeltasMs = { 0, 60_000 }, Values = { 400, double.NaN, double.NaN, 250 } };
        var payload = new VitalBatch { BaseTimeMs = Wearable.NowMs - 120_000, Series = { series } }.ToByteArray();

        Assert.True(PayloadDecoder.TryDecode(new(payload), builder, out _, out var error), error);

        Assert.Equal(0, builder.Count);
        Assert.Equal((2, 2), (builder.RejectedFor(RejectReason.Implausible), builder.RejectedFor(RejectReason.MissingValue)));
        Assert.Equal([(VitalKind.SystolicPressure, 400.0), (VitalKind.DiastolicPressure, 250.0)], builder.Quarantined.Select(r => (r.Kind, r.Value)));
    }

    [Fact]
    public void A_pair_for_a_single_vital_is_refused()
    {
        var builder = Wearable.NewBuilder();

        Assert.True(Wearable.Decode(builder, $$"""{"readings":[{"kind":"heart_rate","time":"{{At}}","value":[70,71]}]}""", out _, out var error), error);

        Assert.Equal(0, builder.Count);
        Assert.Equal(1, builder.RejectedFor(RejectReason.MissingValue));
    }

    [Fact]
    public void A_protobuf_panel_series_carries_two_values_per_time()
    {
        var builder = Wearable.NewBuilder();
        var series = new VitalSeries { Kind = "blood_pressure", TimeDeltasMs = { 0, 60_000 }, Values = { 120, 80, 125, 82 } };
        var payload = new VitalBatch { BaseTimeMs = Wearable.NowMs - 120_000, Series = { series } }.ToByteArray();

        Assert.True(PayloadDecoder.TryDecode(new(payload), builder, out _, out var error), error);

        Assert.Equal(
            [
                new VitalReading(VitalKind.SystolicPressure, Wearable.NowMs - 120_000, 120),
                new VitalReading(VitalKind.DiastolicPressure, Wearable.NowMs - 120_000, 80),
                new VitalReading(VitalKind.SystolicPressure, Wearable.NowMs - 60_000, 125),
                new VitalReading(VitalKind.DiastolicPressure, Wearable.NowMs - 60_000, 82),
            ],
            builder.ToArray());
    }
}
