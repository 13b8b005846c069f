using Telemetry.Core.Readings;
using Telemetry.Core.Storage;
using Telemetry.Core.Vitals;
using Telemetry.Storage.DuckDb;
using static Telemetry.Storage.Tests.DuckDb.Batches;

namespace Telemetry.Storage.Tests.DuckDb;

/// <summary>Reading raw series back: the newest per vital, and a long range streamed page by page.</summary>
public sealed class RawReadTests : IDisposable
{
    private readonly RawStoreFile _file = new();

    private DuckDbRawSeriesStore Store => _file.Store;

    public void Dispose() => _file.Dispose();

    [Fact]
    public async Task The_latest_readings_come_per_vital_newest_first_within_the_range()
    {
        Store.Commit(
            Of("watch-1", "patient-1", 1,
                new(VitalKind.HeartRate, T0, 60), new(VitalKind.HeartRate, T0 + 1_000, 61), new(VitalKind.HeartRate, T0 + 2_000, 62),
                new(VitalKind.OxygenSaturation, T0 + 500, 97), new(VitalKind.Steps, T0 + 9_000, 12)),
            Of("watch-2", "patient-2", 1, new VitalReading(VitalKind.HeartRate, T0 + 5_000, 99)));

        var latest = await Store.ReadLatestAsync("patient-1", [VitalKind.HeartRate, VitalKind.OxygenSaturation], T0, T0 + 1_500, perKind: 2);

        Assert.Equal(
            [
                new StoredReading("watch-1", VitalKind.HeartRate, T0 + 1_000, 61),
                new StoredReading("watch-1", VitalKind.HeartRate, T0, 60),
                new StoredReading("watch-1", VitalKind.OxygenSaturation, T0 + 500, 97),
            ],
            latest);
    }

    [Fact]
    public async Task The_newest_readings_are_found_however_far_back_they_lie_and_in_order()
    {
        // A heart rate an hour and three days before the end, an oxygen saturation forty days before it: stretches apart.
        const long Day = 86_400_000;
        var end = T0 + (50 * Day);
        _file.Store.Commit(
            Of("watch-1", "patient-1", 1,
                new VitalReading(VitalKind.OxygenSaturation, end - (40 * Day), 96),
                new VitalReading(VitalKind.HeartRate, end - (3 * Day), 62),
                new VitalReading(VitalKind.HeartRate, end - 3_600_000, 64)),
            Of("watch-2", "patient-2", 1, new VitalReading(VitalKind.HeartRate, end - 1_000, 99)));

        var latest = await Store.ReadLatestAsync("patient-1", [VitalKind.HeartRate, VitalKind.OxygenSaturation, VitalKind.Steps], 0, end, perKind: 2);

        Assert.Equal(
            [
                new StoredReading("watch-1", VitalKind.HeartRate, end - 3_600_000, 64),
                new StoredReading("watch-1", VitalKind.HeartRate, end - (3 * Day), 62),
                new StoredReading("watch-1", VitalKind.OxygenSaturation, end - (40 * Day), 96),
            ],
            latest);
        Assert.Equal([new StoredReading("watch-1", VitalKind.HeartRate, end - 3_600_000, 64)], await Store.ReadLatestAsync("patient-1", [VitalKind.HeartRate], 0, end, perKind: 1));
    }

    [Fact]
    public async Task A_stream_returns_every_reading_once_in_time_order_across_pages()
    {
        // 12,000 readings at 3,000 distinct times from two devices and two vitals: pages of 10,000 end inside one time.
        var readings = Enumerable.Range(0, 3_000)
            .SelectMany(i => new[] { new VitalReading(VitalKind.HeartRate, T0 + (i * 1_000), 60 + (i % 50)), new VitalReading(VitalKind.OxygenSaturation, T0 + (i * 1_000), 95) })
            .ToArray();
        Store.Commit(Of("watch-a", "patient-1", 1, readings), Of("watch-b", "patient-1", 1, readings), Of("watch-c", "patient-2", 1, readings));

        var streamed = new List<StoredReading>();
        await foreach (var reading in Store.StreamAsync("patient-1", [VitalKind.HeartRate, VitalKind.OxygenSaturation], T0, T0 + 3_000_000))
        {
            streamed.Add(reading);
        }

        Assert.Equal(12_000, streamed.Count);
        Assert.Equal(12_000, streamed.Distinct().Count());
        Assert.Equal(streamed.OrderBy(r => r.TimestampMs).ThenBy(r => r.Kind).ThenBy(r => r.DeviceId, StringComparer.Ordinal), streamed);
        Assert.DoesNotContain(streamed, r => r.DeviceId == "watch-c");
    }

    [Fact]
    public async Task Deleting_before_a_time_removes_older_raw_and_quarantined_readings_only()
    {
        Store.Commit(Of("watch-1", "patient-1", 1,
            new(VitalKind.HeartRate, T0 - 1, 60), new(VitalKind.HeartRate, T0, 61), new(VitalKind.HeartRate, T0 - 5_000, 400)));

        var deleted = await Store.DeleteBeforeAsync(T0);

        Assert.Equal(2, deleted);
        Assert.Equal([new StoredReading("watch-1", VitalKind.HeartRate, T0, 61)], await Store.ReadAsync("patient-1", VitalKind.HeartRate, 0, T0 + 1, 10));
        Assert.Empty(await Store.ReadQuarantineAsync("watch-1", 10));
    }
}
