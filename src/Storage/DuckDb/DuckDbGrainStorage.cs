using DuckDB.NET.Data;
using Orleans.Runtime;
using Orleans.Storage;

namespace Telemetry.Storage.DuckDb;

/// <summary>
/// Orleans grain state in the embedded DuckDB file, so device bindings and alert state are as durable as the raw
/// series on a single machine. Optimistic concurrency through an ETag per grain, as Orleans expects; concurrent writes
/// are committed together.
/// </summary>
public sealed class DuckDbGrainStorage : IGrainStorage
{
    private readonly DuckDbDatabase _database;
    private readonly IGrainStorageSerializer _serializer;

    // Writes and clears group themselves: a burst of alert changes across patients costs a few commits, not one each.
    private readonly WriteGroups<StateChange, InconsistentStateException?> _changes;

    public DuckDbGrainStorage(DuckDbDatabase database, IGrainStorageSerializer serializer)
    {
        _database = database;
        _serializer = serializer;
        _changes = new(Apply);
    }

    public Task ReadStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState) => Task.Run(() =>
    {
        using var connection = _database.OpenConnection();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT etag, data FROM grain_state WHERE grain_type = $1 AND grain_id = $2";
        command.Parameters.Add(new DuckDBParameter(stateName));
        command.Parameters.Add(new DuckDBParameter(grainId.ToString()));
        using var reader = command.ExecuteReader();
        if (!reader.Read())
        {
            grainState.ETag = null;
            grainState.RecordExists = false;
            return;
        }

        grainState.ETag = reader.GetString(0);
        using var data = reader.GetStream(1);
        using var buffer = new MemoryStream();
        data.CopyTo(buffer);
        grainState.State = _serializer.Deserialize<T>(new BinaryData(buffer.ToArray()));
        grainState.RecordExists = true;
    });

    public async Task WriteStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        var change = new StateChange(stateName, grainId, grainState.ETag, _serializer.Serialize(grainState.State).ToArray(), Guid.NewGuid().ToString("N"));
        if (await _changes.WriteAsync(change) is { } refused)
        {
            throw refused;
        }

        grainState.ETag = change.NewETag;
        grainState.RecordExists = true;
    }

    public async Task ClearStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        if (await _changes.WriteAsync(new StateChange(stateName, grainId, grainState.ETag, Data: null, NewETag: null)) is { } refused)
        {
            throw refused;
        }

        grainState.ETag = null;
        grainState.RecordExists = false;
    }

    /// <summary>
    /// Applies a group of changes in one transaction, a few statements for the whole group. A change whose ETag does not
    /// match what is stored (or what an earlier change of the group left) is refused alone: its result is the exception
    /// to throw; the others are applied.
    /// </summary>
    private InconsistentStateException?[] Apply(IReadOnlyList<StateChange> changes)
    {
        using var connection = _database.OpenConnection();
        using var transaction = connection.BeginTransaction();

        var keys = changes.Select(change => (change.StateName, GrainId: change.GrainId.ToString())).Distinct().ToList();
        var etags = keys.ToDictionary(key => key, _ => (string?)null);
        void Found(DuckDBDataReader reader) => etags[(reader.GetString(0), reader.GetString(1))] = reader.GetString(2);
        if (keys.Count == 1)
        {
            DuckDbValues.ReadRow(connection, "SELECT grain_type, grain_id, etag FROM grain_state WHERE grain_type = $1 AND grain_id = $2",
                [keys[0].StateName, keys[0].GrainId], Found);
        }
        else
        {
            DuckDbValues.Read(connection,
                "SELECT s.grain_type, s.grain_id, s.etag FROM grain_state s JOIN (VALUES {values}) k(grain_type, grain_id) USING (grain_type, grain_id)",
                keys, key => [key.StateName, key.GrainId], Found);
        }

        // The last accepted change of each grain is what the group leaves stored.
        var existed = etags.Where(pair => pair.Value is not null).Select(pair => pair.Key).ToHashSet();
        var results = new InconsistentStateException?[changes.Count];
        var last = new Dictionary<(string StateName, string GrainId), StateChange>();
        for (var i = 0; i < changes.Count; i++)
        {
            var change = changes[i];
            var key = (change.StateName, change.GrainId.ToString());
            var stored = etags[key];
            if (!string.Equals(stored, change.ExpectedETag, StringComparison.Ordinal))
            {
                results[i] = new InconsistentStateException($"State '{change.StateName}' of {change.GrainId} was changed by someone else.", stored, change.ExpectedETag);
                continue;
            }

            etags[key] = change.NewETag;
            last[key] = change;
        }

        // An UPDATE of rows that exist and an INSERT of those that do not: DuckDB's INSERT OR REPLACE costs several times either.
        var updates = last.Where(pair => pair.Value.Data is not null && existed.Contains(pair.Key)).ToList();
        var inserts = last.Where(pair => pair.Value.Data is not null && !existed.Contains(pair.Key)).ToList();
        var clears = last.Where(pair => pair.Value.Data is null && existed.Contains(pair.Key)).Select(pair => pair.Key).ToList();
        if (updates is [var (onlyKey, only)])
        {
            DuckDbValues.ExecuteRow(connection, "UPDATE grain_state SET etag = $1, data = $2 WHERE grain_type = $3 AND grain_id = $4",
                only.NewETag, only.Data, onlyKey.StateName, onlyKey.GrainId);
        }
        else
        {
            DuckDbValues.Execute(connection,
                "UPDATE grain_state SET etag = v.etag, data = v.data FROM (VALUES {values}) v(grain_type, grain_id, etag, data) "
                + "WHERE grain_state.grain_type = v.grain_type AND grain_state.grain_id = v.grain_id",
                updates, write => [write.Key.StateName, write.Key.GrainId, write.Value.NewETag, write.Value.Data]);
        }
        DuckDbValues.Execute(connection, "INSERT INTO grain_state VALUES {values}",
            inserts, write => [write.Key.StateName, write.Key.GrainId, write.Value.NewETag, write.Value.Data]);
        DuckDbValues.Execute(connection, "DELETE FROM grain_state WHERE (grain_type, grain_id) IN (SELECT * FROM (VALUES {values}))",
            clears, key => [key.StateName, key.GrainId]);

        transaction.Commit();
        return results;
    }

    /// <summary>A write (with <paramref name="Data"/>) or a clear (without) of one grain's state.</summary>
    private sealed record StateChange(string StateName, GrainId GrainId, string? ExpectedETag, byte[]? Data, string? NewETag);
}
