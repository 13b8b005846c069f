using DuckDB.NET.Data;
using Orleans.Runtime;
using Orleans.Storage;

namespace Telemetry.Storage.DuckDb;

/// <summary>
/// Orleans grain state in the embedded DuckDB file, so device bindings and alert state are as durable as the raw
/// series on a single machine. Optimistic concurrency through an ETag per grain, as Orleans expects. Writes go through
/// the file's group commit (<see cref="DuckDbWriteQueue"/>): many grains' writes share one transaction and one fsync.
/// </summary>
public sealed class DuckDbGrainStorage(DuckDbDatabase database, IGrainStorageSerializer serializer) : IGrainStorage
{
    public Task ReadStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState) => Task.Run(() =>
    {
        using var connection = database.OpenConnection();
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
        grainState.State = serializer.Deserialize<T>(new BinaryData(buffer.ToArray()));
        grainState.RecordExists = true;
    });

    public async Task WriteStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        var data = serializer.Serialize(grainState.State).ToArray();
        var key = grainId.ToString();
        var expected = grainState.ETag;
        var etag = Guid.NewGuid().ToString("N");
        var writes = database.Writes;
        await writes.WriteAsync(_ =>
        {
            CheckETag(writes, stateName, key, expected);
            var command = writes.Command("INSERT OR REPLACE INTO grain_state VALUES ($1, $2, $3, $4)", stateName, key, etag, data);
            return command.ExecuteNonQuery();
        });
        grainState.ETag = etag;
        grainState.RecordExists = true;
    }

    public async Task ClearStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        var key = grainId.ToString();
        var expected = grainState.ETag;
        var writes = database.Writes;
        await writes.WriteAsync(_ =>
        {
            CheckETag(writes, stateName, key, expected);
            var command = writes.Command("DELETE FROM grain_state WHERE grain_type = $1 AND grain_id = $2", stateName, key);
            return command.ExecuteNonQuery();
        });
        grainState.ETag = null;
        grainState.RecordExists = false;
    }

    /// <summary>Refuses, before anything is written, a write whose grain state was changed since it was read.</summary>
    private static void CheckETag(DuckDbWriteQueue writes, string stateName, string grainId, string? expected)
    {
        var command = writes.Command("SELECT etag FROM grain_state WHERE grain_type = $1 AND grain_id = $2", stateName, grainId);
        var stored = command.ExecuteScalar() as string;
        if (!string.Equals(stored, expected, StringComparison.Ordinal))
        {
            throw new InconsistentStateException($"State '{stateName}' of {grainId} was changed by someone else.", stored, expected);
        }
    }
}
