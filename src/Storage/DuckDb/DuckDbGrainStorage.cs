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
    /// <summary>The most grains' states one query reads (a state is a few kilobytes at most).</summary>
    private const int MaxStatesPerRead = 64;

    private readonly DuckDbDatabase _database;
    private readonly IGrainStorageSerializer _serializer;

    // Grains activating together (a start, a fleet of new patients) read their states in shared queries: a query by
    // key costs DuckDB a few hundred microseconds, one for 32 keys about four times that.
    private readonly CoalescedReads<string, StoredState?> _reads;

    public DuckDbGrainStorage(DuckDbDatabase database, IGrainStorageSerializer serializer)
    {
        _database = database;
        _serializer = serializer;
        _reads = new CoalescedReads<string, StoredState?>(Read, missing: null, MaxStatesPerRead);
    }

    public async Task ReadStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        var id = grainId.ToString();
        var key = DuckDbStateWrites.StateKey(stateName, id);
        await _database.StateWrites.SettleAsync(stateName, id);
        if (await _reads.ReadAsync(key, stateName, CancellationToken.None) is not { } stored)
        {
            grainState.ETag = null;
            grainState.RecordExists = false;
            return;
        }

        grainState.State = _serializer.Deserialize<T>(new BinaryData(stored.Data));
        grainState.ETag = stored.ETag;
        grainState.RecordExists = true;
    }

    /// <summary>The stored states of <paramref name="keys"/> (all of one state name), by key; a state not stored is left out.</summary>
    private IReadOnlyDictionary<string, StoredState?> Read(IReadOnlyList<string> keys, string stateName)
    {
        using var connection = _database.OpenConnection();
        using var command = connection.CreateCommand();
        command.CommandText = keys.Count == 1
            ? "SELECT state_key, etag, data FROM grain_states WHERE state_key = $1"
            : $"SELECT state_key, etag, data FROM grain_states WHERE state_key IN ({string.Join(", ", keys.Select((_, i) => $"${i + 1}"))})";
        foreach (var key in keys)
        {
            command.Parameters.Add(new DuckDBParameter(key));
        }

        var states = new Dictionary<string, StoredState?>(keys.Count, StringComparer.Ordinal);
        using var reader = command.ExecuteReader();
        while (reader.Read())
        {
            using var data = reader.GetStream(2);
            using var buffer = new MemoryStream();
            data.CopyTo(buffer);
            states[reader.GetString(0)] = new StoredState(reader.GetString(1), buffer.ToArray());
        }

        return states;
    }

    public async Task WriteStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        // A name refused here never reaches the journal, whose records the file takes later.
        DuckDbStateWrites.CheckStateName(stateName);

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
        DuckDbStateWrites.CheckStateName(stateName);
        if (await _database.StateWrites.WriteStateAsync(new(stateName, grainId, grainState.ETag, Data: null, NewETag: null), []) is { } refused)
        {
            throw refused;
        }

        grainState.ETag = null;
        grainState.RecordExists = false;
    }

    private sealed record StoredState(string ETag, byte[] Data);
}
