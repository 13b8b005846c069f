using DuckDB.NET.Data;
using Orleans;
using Orleans.Runtime;
using Orleans.Storage;
using Telemetry.Storage.DuckDb;

namespace Telemetry.Storage.Tests.DuckDb;

/// <summary>Grain state in a real DuckDB file: writes made at once are committed together, and an ETag conflict fails alone.</summary>
public sealed class DuckDbGrainStorageTests : IDisposable
{
    private readonly TemporaryDirectory _directory = new();
    private readonly DuckDbDatabase _database;
    private readonly DuckDbGrainStorage _storage;

    public DuckDbGrainStorageTests()
    {
        _database = new DuckDbDatabase(_directory.Options);
        _storage = new DuckDbGrainStorage(_database, new JsonStateSerializer());
    }

    [Fact]
    public async Task Writes_made_at_once_are_all_stored_and_one_with_a_stale_etag_is_refused_alone()
    {
        var states = Enumerable.Range(0, 40).Select(i => new GrainState<Counter>(new Counter(i))).ToArray();
        await Task.WhenAll(states.Select((state, i) => _storage.WriteStateAsync("alerts", Patient(i), state)));
        Assert.All(states, state => Assert.True(state.RecordExists && state.ETag is not null));

        // Everyone writes again at once; patient 7 writes with the ETag it had before its first write.
        var stale = new GrainState<Counter>(new Counter(-1)) { ETag = null };
        for (var i = 0; i < states.Length; i++)
        {
            states[i].State = new Counter(i + 100);
        }

        var again = states.Select((state, i) => _storage.WriteStateAsync("alerts", Patient(i), state))
            .Append(_storage.WriteStateAsync("alerts", Patient(7), stale))
            .ToList();
        var refused = await Assert.ThrowsAsync<InconsistentStateException>(() => Task.WhenAll(again));
        Assert.Contains("was changed by someone else", refused.Message, StringComparison.Ordinal);
        Assert.Equal(1, again.Count(task => task.IsFaulted));

        for (var i = 0; i < states.Length; i++)
        {
            var read = new GrainState<Counter>();
            await _storage.ReadStateAsync("alerts", Patient(i), read);
            Assert.Equal(i + 100, read.State!.Value);
            Assert.True(read.RecordExists);
        }
    }

    [Fact]
    public async Task A_cleared_state_is_gone_and_a_clear_with_a_stale_etag_is_refused()
    {
        var kept = new GrainState<Counter>(new Counter(1));
        var cleared = new GrainState<Counter>(new Counter(2));
        await _storage.WriteStateAsync("alerts", Patient(1), kept);
        await _storage.WriteStateAsync("alerts", Patient(2), cleared);
        var before = kept.ETag;
        await _storage.WriteStateAsync("alerts", Patient(1), kept);

        await Task.WhenAll(
            _storage.ClearStateAsync("alerts", Patient(2), cleared),
            Assert.ThrowsAsync<InconsistentStateException>(() => _storage.ClearStateAsync("alerts", Patient(1), new GrainState<Counter>(new Counter(0)) { ETag = before })));

        Assert.False(cleared.RecordExists);
        var read = new GrainState<Counter>();
        await _storage.ReadStateAsync("alerts", Patient(2), read);
        Assert.False(read.RecordExists);
        await _storage.ReadStateAsync("alerts", Patient(1), read);
        Assert.Equal(1, read.State!.Value);
    }

    [Fact]
    public async Task After_a_restart_writes_are_checked_against_the_stored_etag_and_a_cleared_state_can_be_written_anew()
    {
        var state = new GrainState<Counter>(new Counter(1));
        await _storage.WriteStateAsync("alerts", Patient(1), state);
        var cleared = new GrainState<Counter>(new Counter(2));
        await _storage.WriteStateAsync("alerts", Patient(2), cleared);
        await _storage.ClearStateAsync("alerts", Patient(2), cleared);

        // A new storage over the same file knows nothing of the writes above but what the file holds.
        var restarted = new DuckDbGrainStorage(_database, new JsonStateSerializer());
        await Assert.ThrowsAsync<InconsistentStateException>(() => restarted.WriteStateAsync("alerts", Patient(1), new GrainState<Counter>(new Counter(9))));
        state.State = new Counter(3);
        await restarted.WriteStateAsync("alerts", Patient(1), state);
        state.State = new Counter(4);
        await restarted.WriteStateAsync("alerts", Patient(1), state);
        await restarted.WriteStateAsync("alerts", Patient(2), new GrainState<Counter>(new Counter(5)));
        var stale = new GrainState<Counter>(new Counter(7)) { ETag = "an etag the row no longer has" };
        await Assert.ThrowsAsync<InconsistentStateException>(() => restarted.WriteStateAsync("alerts", Patient(1), stale));

        var read = new GrainState<Counter>();
        await restarted.ReadStateAsync("alerts", Patient(1), read);
        Assert.Equal(4, read.State!.Value);
        await restarted.ReadStateAsync("alerts", Patient(2), read);
        Assert.Equal(5, read.State!.Value);
    }

    [Fact]
    public async Task A_read_of_a_state_the_journal_holds_has_the_file_take_it_first_and_a_read_of_another_state_does_not()
    {
        // The file takes the journal's records only when a read needs them (or the server stops).
        using var directory = new TemporaryDirectory();
        using var database = new DuckDbDatabase(Microsoft.Extensions.Options.Options.Create(new DuckDbOptions { Path = directory.Options.Value.Path, JournalDelay = TimeSpan.FromDays(1) }));
        var storage = new DuckDbGrainStorage(database, new JsonStateSerializer());
        var journal = Path.Combine(directory.Path, "telemetry.state-journal");
        await storage.WriteStateAsync("devices", Device(1), new GrainState<Counter>(new Counter(1)));
        Assert.True(new FileInfo(journal).Length > 0);

        // Other grains loading (the next devices being provisioned, say), or the same grain's other state, leave it there.
        var other = new GrainState<Counter>();
        await storage.ReadStateAsync("devices", Device(2), other);
        Assert.False(other.RecordExists);
        await storage.ReadStateAsync("alerts", Device(1), other);
        Assert.False(other.RecordExists);
        Assert.True(new FileInfo(journal).Length > 0);

        // The grain itself loading finds its state, the file having taken the journal first; and so after a second write.
        var read = new GrainState<Counter>();
        await storage.ReadStateAsync("devices", Device(1), read);
        Assert.Equal((1, true), (read.State!.Value, read.RecordExists));
        Assert.Equal(0, new FileInfo(journal).Length);
        read.State = new Counter(2);
        await storage.WriteStateAsync("devices", Device(1), read);
        var again = new GrainState<Counter>();
        await storage.ReadStateAsync("devices", Device(1), again);
        Assert.Equal((2, read.ETag), (again.State!.Value, again.ETag));

        // A clear waiting in the journal is seen the same way.
        await storage.ClearStateAsync("devices", Device(1), again);
        var cleared = new GrainState<Counter>();
        await storage.ReadStateAsync("devices", Device(1), cleared);
        Assert.False(cleared.RecordExists);
    }

    [Fact]
    public async Task Grains_activating_together_each_read_their_own_state_or_none()
    {
        // More grains than one query reads, of two state names, stored and not, some asked for twice.
        var stored = Enumerable.Range(0, 150).Where(i => i % 3 != 0).ToArray();
        await Task.WhenAll(stored.Select(i => _storage.WriteStateAsync("alerts", Patient(i), new GrainState<Counter>(new Counter(i)))));
        await _storage.WriteStateAsync("devices", Patient(1), new GrainState<Counter>(new Counter(-1)));

        var reads = Enumerable.Range(0, 150).Concat([1, 2, 3]).Select(i => (Patient: i, State: new GrainState<Counter>())).ToArray();
        var device = new GrainState<Counter>();
        await Task.WhenAll(reads.Select(read => _storage.ReadStateAsync("alerts", Patient(read.Patient), read.State))
            .Append(_storage.ReadStateAsync("devices", Patient(1), device)));

        Assert.All(reads, read => Assert.Equal(
            read.Patient % 3 != 0 ? (read.Patient, true) : (0, false),
            (read.State.State?.Value ?? 0, read.State.RecordExists)));
        Assert.All(reads.Where(read => read.Patient % 3 == 0), read => Assert.Null(read.State.ETag));
        Assert.Equal((-1, true), (device.State!.Value, device.RecordExists));
    }

    [Fact]
    public async Task A_file_keyed_by_state_name_and_grain_id_moves_to_one_key_column_and_a_state_is_then_found_through_its_index()
    {
        using var directory = new TemporaryDirectory();
        using (var old = new DuckDBConnection($"Data Source={directory.Options.Value.Path}"))
        {
            old.Open();
            using var command = old.CreateCommand();
            command.CommandText = """
                CREATE TABLE grain_state (grain_type VARCHAR NOT NULL, grain_id VARCHAR NOT NULL, etag VARCHAR NOT NULL,
                                          data BLOB NOT NULL, PRIMARY KEY (grain_type, grain_id));
                INSERT INTO grain_state VALUES ('alerts', 'patient/p-1', 'etag-1', '{"Value":5}'::BLOB),
                                               ('devices', 'device/d-1', 'etag-2', '{"Value":6}'::BLOB);
                """;
            command.ExecuteNonQuery();
        }

        using (var database = new DuckDbDatabase(directory.Options))
        {
            var storage = new DuckDbGrainStorage(database, new JsonStateSerializer());
            var read = new GrainState<Counter>();
            await storage.ReadStateAsync("alerts", Patient(1), read);
            Assert.Equal((5, "etag-1", true), (read.State!.Value, read.ETag, read.RecordExists));
            await Assert.ThrowsAsync<InconsistentStateException>(
                () => storage.WriteStateAsync("devices", Device(1), new GrainState<Counter>(new Counter(7)) { ETag = "etag-1" }));
            read.State = new Counter(8);
            await storage.WriteStateAsync("alerts", Patient(1), read);

            // A state name with a slash in it would make two different states' keys alike, so it is refused.
            var refused = await Assert.ThrowsAsync<ArgumentException>(() => storage.ReadStateAsync("alerts/x", Patient(1), new GrainState<Counter>()));
            Assert.Contains("may not hold a slash", refused.Message, StringComparison.Ordinal);
            await Assert.ThrowsAsync<ArgumentException>(() => storage.WriteStateAsync("alerts/x", Patient(1), new GrainState<Counter>(new Counter(1))));
            await Assert.ThrowsAsync<ArgumentException>(() => storage.ClearStateAsync("alerts/x", Patient(1), new GrainState<Counter>()));
        }

        using (var reopened = new DuckDbDatabase(directory.Options))
        {
            var storage = new DuckDbGrainStorage(reopened, new JsonStateSerializer());
            var (alerts, device) = (new GrainState<Counter>(), new GrainState<Counter>());
            await storage.ReadStateAsync("alerts", Patient(1), alerts);
            await storage.ReadStateAsync("devices", Device(1), device);
            Assert.Equal((8, 6, "etag-2"), (alerts.State!.Value, device.State!.Value, device.ETag));

            using var connection = reopened.OpenConnection();
            using var command = connection.CreateCommand();
            command.CommandText = "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() AND table_name = 'grain_state'";
            Assert.Equal(0L, Convert.ToInt64(command.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture));

            // Found through the key's index, not by scanning every patient's and device's state (DuckDB chooses an index
            // scan as it runs the query, so only the profile of a run shows it).
            command.CommandText = "EXPLAIN ANALYZE SELECT etag, data FROM grain_states WHERE state_key = 'alerts/patient/p-1'";
            using var plan = command.ExecuteReader();
            Assert.True(plan.Read());
            Assert.Contains("Index Scan", plan.GetString(1), StringComparison.Ordinal);
        }
    }

    public void Dispose()
    {
        _database.Dispose();
        _directory.Dispose();
    }

    private static GrainId Patient(int i) => GrainId.Create("patient", $"p-{i}");

    private static GrainId Device(int i) => GrainId.Create("device", $"d-{i}");

    public sealed record Counter(int Value)
    {
        public Counter()
            : this(0)
        {
        }
    }
}
