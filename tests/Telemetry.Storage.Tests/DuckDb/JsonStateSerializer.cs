using System.Text.Json;
using Orleans.Storage;

namespace Telemetry.Storage.Tests.DuckDb;

/// <summary>Grain state as JSON, for the tests of the DuckDB grain storage (the server uses Orleans' serializer).</summary>
internal sealed class JsonStateSerializer : IGrainStorageSerializer
{
    public BinaryData Serialize<T>(T? input) => new(JsonSerializer.SerializeToUtf8Bytes(input));

    public T Deserialize<T>(BinaryData input) => JsonSerializer.Deserialize<T>(input.ToMemory().Span)!;
}
