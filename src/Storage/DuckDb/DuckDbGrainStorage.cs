using DuckDB.NET.Data;
using Orleans.Runtime;
using Orleans.Storage;
using Telemetry.Core.Alerts;

namespace Telemetry.Storage.DuckDb;

/// <summary>
/// Orleans grain state in the embedded DuckDB file, so device bindings and alert state are as durable as the raw
/// series on a single machine. Optimistic concurrency through an ETag per grain, as Orleans expects; concurrent writes
/// are journaled together. A state that carries alert events (<see cref="IAlertOutbox"/>) is stored with them in the
/// alert log, in one record of the journal and one transaction of the file (see <see cref="DuckDbStateWrites"/>).
/// </summary>
public sealed class DuckDbGrainStorage : IGrainStorage
{
    private readonly DuckDbDatabase _database;
    private readonly IGrainStorageSerializer _serializer;

    public DuckDbGrainStorage(DuckDbDatabase database, IGrainStorageSerializer serializer)
    {
        _database = database;
        _serializer = serializer;
    }

    public async Task ReadStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        var id = grainId.ToString();
        await _database.StateWrites.SettleAsync(stateName, id);
        await Task.Run(() => Read(stateName, id, grainState));
    }

    private void Read<T>(string stateName, string grainId, IGrainState<T> grainState)
    {
        using var connection = _database.OpenConnection();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT etag, data FROM grain_states WHERE state_key = $1";
        command.Parameters.Add(new DuckDBParameter(DuckDbStateWrites.StateKey(stateName, grainId)));
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
    }

    public async Task WriteStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        // The events taken with the serialised state, so what is stored of the two matches.
        AlertEvent[] events = grainState.State is IAlertOutbox { PendingEvents.Count: > 0 } outbox ? [.. outbox.PendingEvents] : [];
        var change = new DuckDbStateWrites.StateChange(stateName, grainId, grainState.ETag, _serializer.Serialize(grainState.State).ToArray(), Guid.NewGuid().ToString("N"));
        if (await _database.StateWrites.WriteStateAsync(change, events) is { } refused)
        {
            throw refused;
        }

        grainState.ETag = change.NewETag;
        grainState.RecordExists = true;
    }

    public async Task ClearStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        if (await _database.StateWrites.WriteStateAsync(new(stateName, grainId, grainState.ETag, Data: null, NewETag: null), []) is { } refused)
        {
            throw refused;
        }

        grainState.ETag = null;
        grainState.RecordExists = false;
    }
}
