using System.ComponentModel.DataAnnotations;
using System.Diagnostics.Metrics;
using System.Reflection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using Telemetry.Core.Alerts;
using Telemetry.Core.Readings;
using Telemetry.Core.Rollups;
using Telemetry.Core.Storage;
using Telemetry.Core.Vitals;
using Telemetry.Storage.DuckDb;
using Telemetry.Storage.Retention;
using Telemetry.Storage.Tests.DuckDb;
using static Telemetry.Storage.Tests.DuckDb.Batches;

namespace Telemetry.Storage.Tests.Retention;

/// <summary>Retention per resolution: old raw readings go while the rollups that summarise them stay.</summary>
public sealed class RetentionTests : IAsyncLifetime
{
    private const long Day = 86_400_000;
    private readonly TemporaryDirectory _directory = new();
    private DuckDbDatabase _database = null!;
    private DuckDbRawSeriesStore _raw = null!;
    private DuckDbRollupStore _rollups = null!;
    private DuckDbAlertStore _alerts = null!;

    public async Task InitializeAsync()
    {
        _database = new DuckDbDatabase(_directory.Options);
        _raw = new DuckDbRawSeriesStore(_database);
        _alerts = new DuckDbAlertStore(_database);
        _rollups = new DuckDbRollupStore(_database, _directory.Options, TimeProvider.System, NullLogger<DuckDbRollupStore>.Instance);
        await _rollups.StartAsync(CancellationToken.None);
    }

    public async Task DisposeAsync()
    {
        await _rollups.StopAsync(CancellationToken.None);
        _rollups.Dispose();
        _raw.Dispose();
        _database.Dispose();
        _directory.Dispose();
    }

    [Fact]
    public async Task Each_resolution_keeps_its_own_days_and_rollups_outlive_the_readings_they_summarise()
    {
        var now = T0 + (400 * Day);
        long[] ages = [1, 100, 200, 2_000];
        foreach (var age in ages)
        {
            var at = now - (age * Day);
            _raw.Commit(Of("watch-1", "patient-1", (ulong)age, new VitalReading(VitalKind.HeartRate, at, 70)));
            await _rollups.WriteAsync([.. ResolutionExtensions.All.Select(r =>
                new Rollup("patient-1", VitalKind.HeartRate, r, new RollupWindow(r.WindowStart(at), 1, 70, 70, 70, 4_900, 70, at)))]);
        }

        // An alert raised and cleared 400 days ago, with its two events, and one raised a day ago.
        foreach (var (seq, age, status) in new[] { (1L, 400, AlertStatus.Active), (2L, 400, AlertStatus.Cleared), (3L, 1, AlertStatus.Active) })
        {
            var raisedAt = DateTimeOffset.FromUnixTimeMilliseconds(now - (age * Day));
            var alert = new Alert($"patient-1~{(age == 1 ? 2 : 1)}", "patient-1", "hr-high", AlertRuleType.Threshold, AlertCategory.Clinical,
                AlertPriority.Medium, VitalKind.HeartRate, status, "Heart rate high", 130, raisedAt, raisedAt);
            await _alerts.AppendAsync([new AlertEvent("patient-1", seq, status == AlertStatus.Cleared ? AlertEventType.Cleared : AlertEventType.Raised, raisedAt, alert)]);
        }

        var service = Service(now, new RetentionOptions { RawDays = 90, MinuteRollupDays = 180, HourRollupDays = 1_095, DayRollupDays = 0, AlertDays = 365 });
        var deleted = await service.ApplyAsync();

        Assert.Equal(3, deleted["raw"]);
        Assert.Equal(2, deleted["1m"]);
        Assert.Equal(1, deleted["1h"]);
        Assert.False(deleted.ContainsKey("1d"));
        Assert.Equal(3, deleted["alerts"]);
        Assert.Equal(["patient-1~2"], (await _alerts.QueryAsync(new AlertQuery(null, null, null, OpenOnly: false, Limit: 10))).Select(alert => alert.AlertId));
        Assert.Single(await _raw.ReadAsync("patient-1", VitalKind.HeartRate, 0, now, 10));
        Assert.Equal(2, (await _rollups.QueryAsync("patient-1", VitalKind.HeartRate, Resolution.Minute, 0, now)).Count);
        Assert.Equal(3, (await _rollups.QueryAsync("patient-1", VitalKind.HeartRate, Resolution.Hour, 0, now)).Count);
        Assert.Equal(4, (await _rollups.QueryAsync("patient-1", VitalKind.HeartRate, Resolution.Day, 0, now)).Count);
    }

    [Theory]
    [InlineData(90, 180, 1_095, 0, null)]
    [InlineData(0, 0, 0, 0, null)]
    [InlineData(2, 180, 1_095, 0, "RawDays")]
    [InlineData(90, 30, 1_095, 0, "MinuteRollupDays")]
    [InlineData(0, 180, 1_095, 0, "MinuteRollupDays")]
    [InlineData(90, 180, 1_095, 365, "DayRollupDays")]
    public void Options_refuse_keeping_a_summary_shorter_than_what_it_summarises(int raw, int minute, int hour, int day, string? invalid)
    {
        var options = new RetentionOptions { RawDays = raw, MinuteRollupDays = minute, HourRollupDays = hour, DayRollupDays = day };
        var results = new List<ValidationResult>();

        Validator.TryValidateObject(options, new ValidationContext(options), results, validateAllProperties: true);

        Assert.Equal(invalid is null ? [] : [invalid], results.SelectMany(r => r.MemberNames));
    }

    [Fact]
    public async Task A_step_that_fails_is_left_for_the_next_interval_and_the_steps_after_it_still_run()
    {
        var now = T0 + (400 * Day);
        var at = now - (200 * Day);
        await _rollups.WriteAsync([new Rollup("patient-1", VitalKind.HeartRate, Resolution.Minute, new RollupWindow(Resolution.Minute.WindowStart(at), 1, 70, 70, 70, 4_900, 70, at))]);

        // The raw store's delete fails (a series server's delete timing out, say).
        var service = Service(now, new RetentionOptions { RawDays = 90, MinuteRollupDays = 180, HourRollupDays = 1_095, DayRollupDays = 0 }, DispatchProxy.Create<IRawSeriesStore, Unavailable>());
        var failed = new List<string?>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, listening) =>
        {
            if (instrument.Name == "telemetry.retention.failures")
            {
                listening.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((_, count, tags, _) =>
        {
            lock (failed)
            {
                failed.Add($"{tags.ToArray().Single(tag => tag.Key == "resolution").Value} {count}");
            }
        });
        listener.Start();
        var deleted = await service.ApplyAsync();

        // Counted, for an operator to alert on a retention failing run after run.
        Assert.Equal(["raw 1"], failed);
        Assert.False(deleted.ContainsKey("raw"));
        Assert.Equal(1, deleted["1m"]);
        Assert.Empty(await _rollups.QueryAsync("patient-1", VitalKind.HeartRate, Resolution.Minute, 0, now));
    }

    private RetentionService Service(long nowMs, RetentionOptions options, IRawSeriesStore? raw = null) =>
        new(raw ?? _raw, _rollups, _alerts, Options.Create(options), new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(nowMs)),
            new TestMeterFactory(), NullLogger<RetentionService>.Instance);

    /// <summary>A raw store every call of which fails.</summary>
    public class Unavailable : DispatchProxy
    {
        protected override object? Invoke(MethodInfo? targetMethod, object?[]? args) =>
            throw new InvalidOperationException($"{targetMethod?.Name} failed: the store is unavailable");
    }

    private sealed class TestMeterFactory : IMeterFactory
    {
        private readonly List<Meter> _meters = [];

        public Meter Create(MeterOptions options)
        {
            var meter = new Meter(options);
            _meters.Add(meter);
            return meter;
        }

        public void Dispose() => _meters.ForEach(meter => meter.Dispose());
    }
}
