using Microsoft.Extensions.Logging.Abstractions;
using Telemetry.Core.Rollups;
using Telemetry.Core.Vitals;
using Telemetry.Storage.DuckDb;
using static Telemetry.Storage.Tests.DuckDb.Batches;

namespace Telemetry.Storage.Tests.DuckDb;

public sealed class DuckDbRollupStoreTests : IAsyncLifetime
{
    private readonly TemporaryDirectory _directory = new();
    private DuckDbDatabase _database = null!;
    private DuckDbRollupStore _store = null!;

    public async Task InitializeAsync() => await OpenAsync();

    public async Task DisposeAsync()
    {
        await CloseAsync();
        _directory.Dispose();
    }

    [Fact]
    public async Task Written_rollups_come_back_oldest_first_within_the_range()
    {
        var early = RollupWindow.Of(T0, T0 + 5_000, 70).Add(T0 + 50_000, 80);
        var late = RollupWindow.Of(T0 + 60_000, T0 + 61_000, 90);
        var outside = RollupWindow.Of(T0 + 120_000, T0 + 121_000, 100);

        await _store.WriteAsync(
        [
            new Rollup("patient-1", VitalKind.HeartRate, Resolution.Minute, late),
            new Rollup("patient-1", VitalKind.HeartRate, Resolution.Minute, outside),
            new Rollup("patient-1", VitalKind.HeartRate, Resolution.Minute, early),
        ]);

        var windows = await _store.QueryAsync("patient-1", VitalKind.HeartRate, Resolution.Minute, T0, T0 + 120_000);

        Assert.Equal([early, late], windows);
    }

    [Fact]
    public async Task Rollups_are_kept_apart_by_patient_kind_and_resolution()
    {
        var minute = RollupWindow.Of(T0, T0 + 1_000, 70);
        var hour = RollupWindow.Of(T0, T0 + 1_000, 70).Add(T0 + 120_000, 74);

        await _store.WriteAsync(
        [
            new Rollup("patient-1", VitalKind.HeartRate, Resolution.Minute, minute),
            new Rollup("patient-1", VitalKind.HeartRate, Resolution.Hour, hour),
            new Rollup("patient-1", VitalKind.OxygenSaturation, Resolution.Minute, RollupWindow.Of(T0, T0, 97)),
            new Rollup("patient-2", VitalKind.HeartRate, Resolution.Minute, RollupWindow.Of(T0, T0, 140)),
        ]);

        Assert.Equal([minute], await _store.QueryAsync("patient-1", VitalKind.HeartRate, Resolution.Minute, T0, T0 + 3_600_000));
        Assert.Equal([hour], await _store.QueryAsync("patient-1", VitalKind.HeartRate, Resolution.Hour, T0, T0 + 3_600_000));
        Assert.Empty(await _store.QueryAsync("patient-3", VitalKind.HeartRate, Resolution.Minute, T0, T0 + 3_600_000));
    }

    [Fact]
    public async Task A_second_write_of_the_same_window_replaces_the_first()
    {
        var checkpoint = RollupWindow.Of(T0, T0 + 5_000, 70);
        var closed = checkpoint.Add(T0 + 40_000, 90);

        await _store.WriteAsync([new Rollup("patient-1", VitalKind.HeartRate, Resolution.Minute, checkpoint)]);
        await _store.WriteAsync([new Rollup("patient-1", VitalKind.HeartRate, Resolution.Minute, closed)]);

        var window = Assert.Single(await _store.QueryAsync("patient-1", VitalKind.HeartRate, Resolution.Minute, T0, T0 + 60_000));
        Assert.Equal(closed, window);
        Assert.Equal(2, window.Count);
    }

    [Fact]
    public async Task Rollups_survive_reopening_the_file()
    {
        var window = RollupWindow.Of(T0, T0 + 5_000, 36.8).Add(T0 + 3_000_000, 37.4);
        await _store.WriteAsync([new Rollup("patient-1", VitalKind.BodyTemperature, Resolution.Hour, window)]);

        await CloseAsync();
        await OpenAsync();

        Assert.Equal([window], await _store.QueryAsync("patient-1", VitalKind.BodyTemperature, Resolution.Hour, T0, T0 + 3_600_000));
    }

    [Fact]
    public async Task Writing_nothing_completes_at_once()
    {
        await _store.WriteAsync([]);

        Assert.Empty(await _store.QueryAsync("patient-1", VitalKind.HeartRate, Resolution.Minute, T0, T0 + 60_000));
    }

    private async Task OpenAsync()
    {
        _database = new DuckDbDatabase(_directory.Options);
        _store = new DuckDbRollupStore(_database, _directory.Options, TimeProvider.System, NullLogger<DuckDbRollupStore>.Instance);
        await _store.StartAsync(CancellationToken.None);
    }

    private async Task CloseAsync()
    {
        await _store.StopAsync(CancellationToken.None);
        _store.Dispose();
        _database.Dispose();
    }
}
