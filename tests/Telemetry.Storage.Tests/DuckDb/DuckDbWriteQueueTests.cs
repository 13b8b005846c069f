using DuckDB.NET.Data;
using Telemetry.Core.Alerts;
using Telemetry.Core.Vitals;
using Telemetry.Storage.DuckDb;

namespace Telemetry.Storage.Tests.DuckDb;

/// <summary>
/// The DuckDB file's group commit: writes queued together share one transaction; a write that refuses fails alone; a
/// statement that fails rolls its whole group back, and the queue goes on. The loop is held on a gate so that the
/// writes of a test land in one group.
/// </summary>
public sealed class DuckDbWriteQueueTests : IDisposable
{
    private readonly TemporaryDirectory _directory = new();
    private readonly DuckDbDatabase _database;

    public DuckDbWriteQueueTests()
    {
        _database = new DuckDbDatabase(_directory.Options);
        using var connection = _database.OpenConnection();
        using var command = connection.CreateCommand();
        command.CommandText = "CREATE TABLE notes (id INTEGER PRIMARY KEY, text VARCHAR)";
        command.ExecuteNonQuery();
    }

    [Fact]
    public async Task Writes_queued_together_share_one_commit_and_all_land()
    {
        var release = await HoldTheLoopAsync();
        var writes = Enumerable.Range(1, 200).Select(id => _database.Writes.WriteAsync(connection => Insert(connection, id))).ToList();
        var before = _database.Writes.Commits;
        release();
        await Task.WhenAll(writes);

        Assert.Equal(before + 2, _database.Writes.Commits);
        Assert.Equal(Enumerable.Range(1, 200), Ids());
    }

    [Fact]
    public async Task A_write_that_refuses_before_writing_fails_alone()
    {
        var release = await HoldTheLoopAsync();
        var first = _database.Writes.WriteAsync(connection => Insert(connection, 1));
        var refused = _database.Writes.WriteAsync<int>(_ => throw new InvalidOperationException("stale"));
        var third = _database.Writes.WriteAsync(connection => Insert(connection, 3));
        release();

        await first;
        await third;
        Assert.Equal("stale", (await Assert.ThrowsAsync<InvalidOperationException>(() => refused)).Message);
        Assert.Equal([1, 3], Ids());
    }

    [Fact]
    public async Task A_failing_statement_rolls_back_its_group_and_the_queue_goes_on()
    {
        await _database.Writes.WriteAsync(connection => Insert(connection, 7));
        var release = await HoldTheLoopAsync();
        var innocent = _database.Writes.WriteAsync(connection => Insert(connection, 1));
        var failing = _database.Writes.WriteAsync(connection => Insert(connection, 7));
        release();

        await Assert.ThrowsAsync<DuckDBException>(() => failing);
        await Assert.ThrowsAsync<DuckDBException>(() => innocent);
        Assert.Equal([7], Ids());

        await _database.Writes.WriteAsync(connection => Insert(connection, 2));
        Assert.Equal([2, 7], Ids());
    }

    [Fact]
    public async Task Alert_positions_handed_out_in_a_rolled_back_group_are_handed_out_again()
    {
        var alerts = new DuckDbAlertStore(_database);
        await _database.Writes.WriteAsync(connection => Insert(connection, 7));
        var release = await HoldTheLoopAsync();
        var lost = alerts.AppendAsync([Raised("p-1", 1)]);
        var failing = _database.Writes.WriteAsync(connection => Insert(connection, 7));
        release();
        await Assert.ThrowsAsync<DuckDBException>(() => failing);
        await Assert.ThrowsAsync<DuckDBException>(() => lost);

        var stored = await alerts.AppendAsync([Raised("p-1", 1), Raised("p-2", 1)]);
        Assert.Equal([1L, 2L], stored.Select(e => e.Position));
        Assert.Equal([1L, 2L], (await alerts.ReadEventsAsync(0, null, 10)).Select(e => e.Position));
    }

    public void Dispose()
    {
        _database.Dispose();
        _directory.Dispose();
    }

    /// <summary>Queues a write that holds the loop until the returned action is called; returns once the loop is held.</summary>
    private async Task<Action> HoldTheLoopAsync()
    {
        var held = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var gate = new ManualResetEventSlim();
        _ = _database.Writes.WriteAsync(_ =>
        {
            held.SetResult();
            gate.Wait();
            return 0;
        });
        await held.Task;
        return gate.Set;
    }

    private static int Insert(DuckDBConnection connection, int id)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "INSERT INTO notes VALUES ($1, 'note')";
        command.Parameters.Add(new DuckDBParameter(id));
        return command.ExecuteNonQuery();
    }

    private List<int> Ids()
    {
        using var connection = _database.OpenConnection();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT id FROM notes ORDER BY id";
        using var reader = command.ExecuteReader();
        var ids = new List<int>();
        while (reader.Read())
        {
            ids.Add(reader.GetInt32(0));
        }

        return ids;
    }

    private static AlertEvent Raised(string patientId, long seq)
    {
        var at = new DateTimeOffset(2026, 11, 25, 9, 0, 0, TimeSpan.Zero);
        var alert = new Alert($"{patientId}~{seq}", patientId, "hr-high", AlertRuleType.Threshold, AlertCategory.Clinical, AlertPriority.Medium,
            VitalKind.HeartRate, AlertStatus.Active, "Heart rate 130 /min is at or above 120 /min", 130, at, at);
        return new AlertEvent(patientId, seq, AlertEventType.Raised, at, alert);
    }
}
