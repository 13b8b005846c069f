using Telemetry.Storage.DuckDb;

namespace Telemetry.Storage.Tests.DuckDb;

/// <summary>The ledger of committed batch numbers across a fleet, over a real DuckDB file.</summary>
public sealed class SequenceLedgerTests : IDisposable
{
    private const ulong Start = 1_764_950_000_000;
    private readonly TemporaryDirectory _directory = new();

    public void Dispose() => _directory.Dispose();

    [Fact]
    public void A_fleet_numbering_its_batches_by_a_clock_keeps_no_more_ranges_than_the_fleet_wide_bound_and_each_device_its_latest()
    {
        using var database = new DuckDbDatabase(_directory.Options);
        using var connection = database.OpenConnection();
        var catalog = database.Readings.Active;
        var ledger = new SequenceLedger(connection, catalog, 0, readingsCarrySequences: false, maxTotalRanges: 1_000);

        // 50 devices, 100 batches each, every batch a gap: 5,000 ranges unbounded.
        for (var batch = 0UL; batch < 100; batch++)
        {
            for (var device = 0; device < 50; device++)
            {
                ledger.Stage($"watch-{device}", Start + (batch * 1_000));
            }

            ledger.AppendStaged(connection, catalog);
            ledger.Committed(connection, catalog, (long)batch + 1);
        }

        Assert.Equal(20, ledger.RangesPerDevice);
        Assert.Equal(1_000, ledger.RangeCount);
        Assert.True(ledger.IsCommitted("watch-7", Start + (99 * 1_000)));
        Assert.True(ledger.IsCommitted("watch-7", Start + (80 * 1_000)));
        Assert.False(ledger.IsCommitted("watch-7", Start + (79 * 1_000)));

        // Opened again: the log holds every number, and the bound holds from the start.
        var reopened = new SequenceLedger(connection, catalog, 100, readingsCarrySequences: false, maxTotalRanges: 1_000);
        Assert.Equal(1_000, reopened.RangeCount);
        Assert.True(reopened.IsCommitted("watch-49", Start + (99 * 1_000)));

        // A fleet so large that its share falls below the floor still keeps a few ranges a device.
        for (var device = 50; device < 500; device++)
        {
            reopened.Stage($"watch-{device}", Start);
        }

        reopened.AppendStaged(connection, catalog);
        reopened.Committed(connection, catalog, 101);
        Assert.Equal(SequenceLedger.MinRangesPerDevice, reopened.RangesPerDevice);
    }
}
