using BenchmarkDotNet.Attributes;
using Microsoft.Extensions.Options;
using Orleans.Runtime;
using Orleans.Storage;
using Telemetry.Storage.DuckDb;

namespace Telemetry.Benchmarks.Pipeline;

/// <summary>
/// What a grain's activation pays to read its state from the DuckDB file (a patient's alert state, a device's binding):
/// one state read by its key, alone or with others at once, in a file that holds the states of <see cref="States"/>
/// patients. Every patient's grain reads its state when it activates: after a start, and when a fleet of new patients'
/// devices begins to send. The file is written through the grain storage in the order patients arrive (not the order
/// of their keys), then closed and opened again, as after a restart.
/// </summary>
[MemoryDiagnoser]
public class GrainStateReadBenchmarks
{
    private DirectoryInfo _directory = null!;
    private DuckDbDatabase _database = null!;
    private DuckDbGrainStorage _storage = null!;
    private GrainId[] _patients = [];
    private int _next;

    [Params(1_000, 100_000)]
    public int States { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _directory = Directory.CreateTempSubdirectory("telemetry-state-bench-");
        var options = Options.Create(new DuckDbOptions { Path = Path.Combine(_directory.FullName, "telemetry.duckdb") });
        _patients = [.. Enumerable.Range(0, States).Select(i => GrainId.Create("patient", $"p-{i}"))];
        var arrival = _patients.ToArray();
        new Random(7).Shuffle(arrival);
        using (var database = new DuckDbDatabase(options))
        {
            var storage = new DuckDbGrainStorage(database, new BlobSerializer());
            foreach (var group in arrival.Chunk(1_000))
            {
                Task.WhenAll(group.Select(patient => storage.WriteStateAsync("alerts", patient, new GrainState<byte[]>(new byte[1024])))).GetAwaiter().GetResult();
            }
        }

        _database = new DuckDbDatabase(options);
        _storage = new DuckDbGrainStorage(_database, new BlobSerializer());
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _database.Dispose();
        _directory.Delete(recursive: true);
    }

    /// <summary>One patient's alert state read, as its grain activates (a different patient each time).</summary>
    [Benchmark(Baseline = true)]
    public async Task<bool> Read_one_state()
    {
        var state = new GrainState<byte[]>();
        await _storage.ReadStateAsync("alerts", _patients[_next++ % _patients.Length], state);
        return state.RecordExists;
    }

    /// <summary>Fifty patients' alert states read at once, as a fleet of new patients' grains activates; per state.</summary>
    [Benchmark(OperationsPerInvoke = 50)]
    public Task Read_fifty_states_at_once() =>
        Task.WhenAll(Enumerable.Range(0, 50).Select(_ => _storage.ReadStateAsync("alerts", _patients[_next++ % _patients.Length], new GrainState<byte[]>())));

    private sealed class BlobSerializer : IGrainStorageSerializer
    {
        public BinaryData Serialize<T>(T? input) => new((byte[])(object)input!);

        public T Deserialize<T>(BinaryData input) => (T)(object)input.ToArray();
    }
}
