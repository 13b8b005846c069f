using Telemetry.Core.Readings;
using Telemetry.Core.Vitals;
using Telemetry.Storage.DuckDb;
using static Telemetry.Storage.Tests.DuckDb.Batches;

namespace Telemetry.Storage.Tests.DuckDb;

/// <summary>The same reading (device, vital, time) arriving twice, from a resend or a second uploader, is stored once.</summary>
public sealed class ReadingDeduplicationTests : IDisposable
{
    private readonly RawStoreFile _file = new();

    private DuckDbRawSeriesStore Store => _file.Store;

    public void Dispose() => _file.Dispose();

    [Fact]
    public async Task A_resend_under_a_new_sequence_number_stores_only_the_readings_that_are_new()
    {
        Store.Commit(Of("watch-1", "patient-1", 1, Heart(0, 60), Heart(1, 61), Heart(2, 62)));

        var resend = Store.Commit(Of("watch-1", "patient-1", 2, Heart(1, 61), Heart(2, 62), Heart(3, 63)));

        Assert.Equal([CommitOutcome.Stored], resend.Outcomes);
        Assert.Equal(2, resend.Batches[0].Duplicates);
        Assert.Equal([Heart(3, 63)], resend.Batches[0].Stored.ToArray());
        double[] expected = [60.0, 61.0, 62.0, 63.0];
        Assert.Equal(expected, await Values(VitalKind.HeartRate));
    }

    [Fact]
    public async Task Resends_weeks_apart_in_one_commit_are_each_found_stored()
    {
        // A phone resending a batch from three weeks ago, and a watch a moment out of order, in one commit: looked up as
        // two stretches of time (not the weeks between), and every repeat is found in either.
        const int weeks = 3 * 7 * 86_400;
        Store.Commit(Of("phone-1", "patient-1", 0, Heart(0, 60), Heart(1, 61)), Of("watch-1", "patient-2", 0, Heart(weeks, 70), Heart(weeks + 2, 72)));

        var (_, _, batches) = Store.Commit(
            Of("phone-1", "patient-1", 0, Heart(0, 60), Heart(1, 61), Heart(2, 62)),
            Of("watch-1", "patient-2", 0, Heart(weeks + 1, 71), Heart(weeks + 2, 72)));

        Assert.Equal((1, 2), (batches[0].Stored.Length, batches[0].Duplicates));
        Assert.Equal((1, 1), (batches[1].Stored.Length, batches[1].Duplicates));
        double[] phone = [60.0, 61.0, 62.0];
        Assert.Equal(phone, await Values(VitalKind.HeartRate));
        double[] watch = [70.0, 71.0, 72.0];
        Assert.Equal(watch, (await Store.ReadAsync("patient-2", VitalKind.HeartRate, T0, T0 + ((weeks + 60) * 1_000L), limit: 1_000)).Select(reading => reading.Value));
    }

    [Fact]
    public async Task Two_uploaders_of_the_same_readings_in_one_commit_store_them_once()
    {
        var (_, _, batches) = Store.Commit(
            Of("watch-1", "patient-1", 0, Heart(0, 60), Heart(1, 61)),
            Of("watch-1", "patient-1", 0, Heart(1, 61), Heart(0, 60)));

        Assert.Equal(2, batches[0].Stored.Length);
        Assert.Equal((0, 2), (batches[1].Stored.Length, batches[1].Duplicates));
        double[] expected = [60.0, 61.0];
        Assert.Equal(expected, await Values(VitalKind.HeartRate));
    }

    [Fact]
    public async Task Another_value_for_a_time_already_stored_is_a_conflict_and_the_first_value_stands()
    {
        Store.Commit(Of("watch-1", "patient-1", 1, Heart(0, 60), Heart(1, 61)));

        // Resent with one value changed (a device's corrected reading), and in one flush a second uploader's value for a
        // time the first gives: neither replaces what came first, nor counts as already stored.
        var (_, _, batches) = Store.Commit(
            Of("watch-1", "patient-1", 2, Heart(0, 60), Heart(1, 64), Heart(2, 62)),
            Of("watch-1", "patient-1", 0, Heart(2, 62), Heart(3, 63)),
            Of("watch-1", "patient-1", 0, Heart(3, 66)));

        Assert.Equal((1, 1, 1), (batches[0].Stored.Length, batches[0].Duplicates, batches[0].Conflicts));
        Assert.Equal((1, 1, 0), (batches[1].Stored.Length, batches[1].Duplicates, batches[1].Conflicts));
        Assert.Equal((0, 0, 1), (batches[2].Stored.Length, batches[2].Duplicates, batches[2].Conflicts));
        double[] expected = [60.0, 61.0, 62.0, 63.0];
        Assert.Equal(expected, await Values(VitalKind.HeartRate));

        // A batch number committed before, resent with a changed value, is no duplicate batch: its conflict is told.
        var resent = Store.Commit(Of("watch-1", "patient-1", 1, Heart(0, 60), Heart(1, 65)));
        Assert.Equal((CommitOutcome.Stored, 1, 1), (resent.Outcomes[0], resent.Batches[0].Duplicates, resent.Batches[0].Conflicts));
    }

    [Fact]
    public void A_value_sent_again_in_another_unit_is_the_same_reading()
    {
        // 100.4 °F is 38 °C but for the last bits of its conversion.
        var fahrenheit = VitalCatalogue.Get(VitalKind.BodyTemperature).FindUnit("[degF]".AsSpan())!.ToCanonical(100.4);
        Assert.NotEqual(38.0, fahrenheit);
        Store.Commit(Of("watch-1", "patient-1", 0, new VitalReading(VitalKind.BodyTemperature, T0, 38.0)));

        var again = Store.Commit(Of("watch-1", "patient-1", 0, new VitalReading(VitalKind.BodyTemperature, T0, fahrenheit)));

        Assert.Equal((1, 0), (again.Batches[0].Duplicates, again.Batches[0].Conflicts));
    }

    [Fact]
    public void A_value_sent_again_converted_and_rounded_by_another_app_is_the_same_reading_and_more_a_conflict()
    {
        // A scale's 70.0 kg uploaded again by a second app that shows pounds to a tenth: 154.3 lb is 69.99 kg.
        var pounds = VitalCatalogue.Get(VitalKind.BodyWeight).FindUnit("lb".AsSpan())!;
        Store.Commit(Of("scale-1", "patient-1", 0, new VitalReading(VitalKind.BodyWeight, T0, 70.0), new VitalReading(VitalKind.BodyWeight, T0 + 1_000, 70.0)));

        var again = Store.Commit(Of("scale-1", "patient-1", 0,
            new VitalReading(VitalKind.BodyWeight, T0, pounds.ToCanonical(154.3)),
            new VitalReading(VitalKind.BodyWeight, T0 + 1_000, pounds.ToCanonical(154.0))));

        Assert.Equal((0, 1, 1), (again.Batches[0].Stored.Length, again.Batches[0].Duplicates, again.Batches[0].Conflicts));
    }

    [Fact]
    public async Task Late_readings_that_were_never_stored_are_stored_even_though_later_ones_were()
    {
        Store.Commit(Of("watch-1", "patient-1", 0, Heart(10, 70)));

        var late = Store.Commit(Of("watch-1", "patient-1", 0, Heart(5, 65), Heart(10, 70), Heart(7, 67)));

        Assert.Equal(1, late.Batches[0].Duplicates);
        Assert.Equal([Heart(5, 65), Heart(7, 67)], late.Batches[0].Stored.ToArray());
        double[] expected = [65.0, 67.0, 70.0];
        Assert.Equal(expected, await Values(VitalKind.HeartRate));
    }

    [Fact]
    public async Task The_same_time_in_another_vital_or_from_another_device_is_not_a_duplicate()
    {
        Store.Commit(Of("watch-1", "patient-1", 0, Heart(0, 60)));

        var (_, _, batches) = Store.Commit(
            Of("watch-1", "patient-1", 0, new VitalReading(VitalKind.OxygenSaturation, T0, 97)),
            Of("ring-1", "patient-1", 0, Heart(0, 60)));

        Assert.All(batches, batch => Assert.Equal((1, 0), (batch.Stored.Length, batch.Duplicates)));
        double[] expected = [60.0, 60.0];
        Assert.Equal(expected, await Values(VitalKind.HeartRate));
    }

    [Fact]
    public async Task Vitals_interleaved_in_one_batch_are_each_checked_against_their_own_latest_reading()
    {
        Store.Commit(Of("watch-1", "patient-1", 0, Heart(10, 70), Oxygen(2, 97)));

        // Heart rate at 11 is new and at 10 repeated; SpO2 at 2 repeated, at 1 late but new, at 3 new and at 3 again
        // repeated within the batch.
        var (_, _, batches) = Store.Commit(Of("watch-1", "patient-1", 0, Heart(11, 71), Oxygen(2, 97), Heart(10, 70), Oxygen(1, 96), Oxygen(3, 98), Oxygen(3, 98)));

        Assert.Equal(3, batches[0].Duplicates);
        Assert.Equal([Heart(11, 71), Oxygen(1, 96), Oxygen(3, 98)], batches[0].Stored.ToArray());
        double[] oxygen = [96.0, 97.0, 98.0];
        Assert.Equal(oxygen, await Values(VitalKind.OxygenSaturation));
    }

    [Fact]
    public async Task Stored_readings_are_recognised_after_the_file_is_reopened()
    {
        Store.Commit(Of("watch-1", "patient-1", 0, Heart(0, 60), Heart(1, 61)));
        _file.Reopen();

        var resend = Store.Commit(Of("watch-1", "patient-1", 0, Heart(0, 60), Heart(1, 61), Heart(2, 62)));

        Assert.Equal(2, resend.Batches[0].Duplicates);
        double[] expected = [60.0, 61.0, 62.0];
        Assert.Equal(expected, await Values(VitalKind.HeartRate));
    }

    private static VitalReading Heart(int second, double value) => new(VitalKind.HeartRate, T0 + (second * 1_000L), value);

    private static VitalReading Oxygen(int second, double value) => new(VitalKind.OxygenSaturation, T0 + (second * 1_000L), value);

    private async Task<double[]> Values(VitalKind kind)
    {
        var readings = await Store.ReadAsync("patient-1", kind, T0 - 60_000, T0 + 3_600_000, limit: 1_000);
        return [.. readings.Select(reading => reading.Value)];
    }
}
