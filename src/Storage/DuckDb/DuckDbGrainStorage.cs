using DuckDB.NET.Data;
using Orleans.Runtime;
using Orleans.Storage;

namespace Telemetry.Storage.DuckDb;

/// <summary>
/// Orleans grain state in the embedded DuckDB file, so device bindings and alert state are as durable as the raw
/// series on a single machine. Optimistic concurrency through an ETag per grain, as Orleans expects.
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

    public Task WriteStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState) => Task.Run(() =>
    {
        var data = serializer.Serialize(grainState.State).ToArray();
        var etag = Guid.NewGuid().ToString("N");
        using var connection = database.OpenConnection();
        using var transaction = connection.BeginTransaction();
        CheckETag(connection, stateName, grainId, grainState.ETag);
        using var command = connection.CreateCommand();
        command.CommandText = "INSERT OR REPLACE INTO grain_state VALUES ($1, $2, $3, $4)";
        command.Parameters.Add(new DuckDBParameter(stateName));
        command.Parameters.Add(new DuckDBParameter(grainId.ToString()));
        command.Parameters.Add(new DuckDBParameter(etag));
        command.Parameters.Add(new DuckDBParameter(data));
        command.ExecuteNonQuery();
        transaction.Commit();
        grainState.ETag = etag;
        grainState.RecordExists = true;
    });

    public Task ClearStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState) => Task.Run(() =>
    {
        using var connection = database.OpenConnection();
        using var transaction = connection.BeginTransaction();
        CheckETag(connection, stateName, grainId, grainState.ETag);
        using var command = connection.CreateCommand();
        command.CommandText = "DELETE FROM grain_state WHERE grain_type = $1 AND grain_id = $2";
        command.Parameters.Add(new DuckDBParameter(stateName));
        command.Parameters.Add(new DuckDBParameter(grainId.ToString()));
        command.ExecuteNonQuery();
        transaction.Commit();
        grainState.ETag = null;
        grainState.RecordExists = false;
    });

    private static void CheckETag(DuckDBConnection connection, string stateName, GrainId grainId, string? expected)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT etag FROM grain_state WHERE grain_type = $1 AND grain_id = $2";
        command.Parameters.Add(new DuckDBParameter(stateName));
        command.Parameters.Add(new DuckDBParameter(grainId.ToString()));
        var stored = command.ExecuteScalar() as string;
        if (!string.Equals(stored, expected, StringComparison.Ordinal))
        {
            throw new InconsistentStateException($"State '{stateName}' of {grainId} was changed by someone else.", stored, expected);
        }
    }
}
