using Telemetry.Core.Readings;
using Telemetry.Core.Vitals;
using Telemetry.Storage.DuckDb;
using static Telemetry.Storage.Tests.DuckDb.Batches;

namespace Telemetry.Storage.Tests.DuckDb;

/// <summary>Implausible readings are committed apart from the patient's series, with their reason.</summary>
public sealed class QuarantineTests : IDisposable
{
    private readonly RawStoreFile _file = new();

    private DuckDbRawSeriesStore Store => _file.Store;

    public void Dispose() => _file.Dispose();

    [Fact]
    public async Task Quarantined_readings_are_kept_with_their_reason_and_never_in_the_series()
    {
        var batch = Of("watch-1", "patient-1", 1, new VitalReading(VitalKind.HeartRate, T0, 70)) with
        {
            Quarantined = new[] { new VitalReading(VitalKind.HeartRate, T0 + 1_000, 900) },
        };

        Store.Commit(batch);
        var resent = Store.Commit(batch);

        var quarantined = Assert.Single(await Store.ReadQuarantineAsync("watch-1", limit: 10));
        Assert.Equal(new VitalReading(VitalKind.HeartRate, T0 + 1_000, 900), quarantined.Reading);
        Assert.Equal("implausible", quarantined.Reason);
        Assert.Equal([CommitOutcome.Duplicate], resent.Outcomes);
        var series = await Store.ReadAsync("patient-1", VitalKind.HeartRate, T0 - 1, T0 + 60_000, limit: 10);
        Assert.Equal([70.0], series.Select(reading => reading.Value));
    }

    [Fact]
    public async Task A_quarantined_reading_sent_again_without_a_batch_number_is_kept_once_and_handed_on_once()
    {
        // SenML carries no batch number: the resend is known by its readings, the quarantined one included.
        var implausible = new VitalReading(VitalKind.HeartRate, T0 + 1_000, 900);
        var batch = Of("watch-3", "patient-3", 0, new VitalReading(VitalKind.HeartRate, T0, 70)) with { Quarantined = new[] { implausible, implausible } };

        var first = Store.Commit(batch);
        var again = Store.Commit(batch with { Quarantined = new[] { implausible, new VitalReading(VitalKind.HeartRate, T0 + 2_000, 950) } });

        Assert.Equal([implausible, new VitalReading(VitalKind.HeartRate, T0 + 2_000, 950)], (await Store.ReadQuarantineAsync("watch-3", limit: 10)).Select(q => q.Reading).Reverse());

        // What each commit kept is what the patient's grain is handed to judge: each implausible reading once.
        Assert.Equal([implausible], first.Batches[0].Quarantined.ToArray());
        Assert.Equal([new VitalReading(VitalKind.HeartRate, T0 + 2_000, 950)], again.Batches[0].Quarantined.ToArray());
    }

    [Fact]
    public async Task A_reused_batch_number_does_not_hide_new_implausible_readings()
    {
        // A reinstalled app numbers from 1 again; its first batch holds a sensor's implausible SpO2 only.
        Store.Commit(Of("watch-4", "patient-4", 1, new VitalReading(VitalKind.HeartRate, T0, 70)));
        var implausible = new VitalReading(VitalKind.OxygenSaturation, T0 + 60_000, 12);

        var reused = Store.Commit(Of("watch-4", "patient-4", 1) with { Quarantined = new[] { implausible } });
        var resent = Store.Commit(Of("watch-4", "patient-4", 1) with { Quarantined = new[] { implausible } });

        Assert.Equal([CommitOutcome.Stored], reused.Outcomes);
        Assert.Equal([implausible], reused.Batches[0].Quarantined.ToArray());
        Assert.Equal([implausible], (await Store.ReadQuarantineAsync("watch-4", limit: 10)).Select(q => q.Reading));

        // Sent again, it is a resend: nothing kept twice, nothing handed on to judge again.
        Assert.Equal([CommitOutcome.Duplicate], resent.Outcomes);
        Assert.True(resent.Batches[0].Quarantined.IsEmpty);

        // Under that number again, one kept before and one new: the new one is kept and handed on, alone.
        var later = new VitalReading(VitalKind.OxygenSaturation, T0 + 120_000, 9);
        var mixed = Store.Commit(Of("watch-4", "patient-4", 1) with { Quarantined = new[] { implausible, later } });
        Assert.Equal([CommitOutcome.Stored], mixed.Outcomes);
        Assert.Equal([later], mixed.Batches[0].Quarantined.ToArray());
        Assert.Equal(2, (await Store.ReadQuarantineAsync("watch-4", limit: 10)).Count);
    }

    [Fact]
    public async Task A_batch_of_only_quarantined_readings_commits_them()
    {
        var batch = Of("watch-2", "patient-2", 0) with { Quarantined = new[] { new VitalReading(VitalKind.OxygenSaturation, T0, 12) } };

        var (_, outcomes, batches) = Store.Commit(batch);

        Assert.Equal([CommitOutcome.Stored], outcomes);
        Assert.True(batches[0].Stored.IsEmpty);
        Assert.Equal(12, Assert.Single(batches[0].Quarantined.ToArray()).Value);
        Assert.Equal(12, Assert.Single(await Store.ReadQuarantineAsync("watch-2", limit: 10)).Reading.Value);
    }
}
