using BenchmarkDotNet.Attributes;
using Microsoft.Extensions.Options;
using Telemetry.Core.Readings;
using Telemetry.Core.Vitals;
using Telemetry.Storage.DuckDb;

namespace Telemetry.Benchmarks.Pipeline;

/// <summary>
/// One group commit to the DuckDB file, as the pipeline makes it: device batches of 50 heart rates (or of one) from up to 200 devices,
/// appended with their sequence numbers in one transaction and made durable (WAL fsync), with the repeated-reading
/// check. Per reading; each commit carries new sequences and later times, as live devices send.
/// </summary>
/// <remarks>
/// The batches' reading arrays are made once and rewritten in place; the only allocation left to the harness is a
/// <see cref="DeviceBatch"/> per batch (about 1.3 bytes per reading), which the decoder makes in the server too.
/// </remarks>
[MemoryDiagnoser]
public class DuckDbCommitBenchmarks
{
    private const int Devices = 200;
    private const int ReadingsPerBatch = 50;

    private readonly ulong[] _sequences = new ulong[Devices];
    private readonly long[] _nextMs = new long[Devices];
    private DirectoryInfo _directory = null!;
    private DuckDbDatabase _database = null!;
    private DuckDbRawSeriesStore _store = null!;
    private VitalReading[][] _readings = null!;
    private DeviceBatch[] _batches = null!;
    private BatchOutcome[] _outcomes = null!;

    private const int MostBatches = 5_000;

    [GlobalSetup]
    public void Setup()
    {
        _directory = Directory.CreateTempSubdirectory("telemetry-commit-bench-");
        _database = new DuckDbDatabase(Options.Create(new DuckDbOptions { Path = Path.Combine(_directory.FullName, "telemetry.duckdb") }));
        _store = new DuckDbRawSeriesStore(_database);
        _readings = [.. Enumerable.Range(0, MostBatches).Select(_ => new VitalReading[ReadingsPerBatch])];
        _batches = new DeviceBatch[MostBatches];
        _outcomes = new BatchOutcome[MostBatches];
        Array.Fill(_nextMs, DateTimeOffset.UtcNow.AddDays(-1).ToUnixTimeMilliseconds());
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _store.Dispose();
        _database.Dispose();
        _directory.Delete(recursive: true);
    }

    /// <summary>A commit under light load: 100 batches, 5,000 readings.</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = 100 * ReadingsPerBatch)]
    public long Commit_100_batches() => Commit(100);

    /// <summary>A commit at a few hundred thousand readings a second: 2,000 batches, 100,000 readings.</summary>
    [Benchmark(OperationsPerInvoke = 2_000 * ReadingsPerBatch)]
    public long Commit_2000_batches() => Commit(2_000);

    /// <summary>
    /// A commit draining a backlog at the pipeline's limit per commit: 5,000 batches, 250,000 readings, more than two of
    /// DuckDB's row groups (122,880 rows), which DuckDB writes to the file as they fill instead of through its WAL.
    /// </summary>
    [Benchmark(OperationsPerInvoke = MostBatches * ReadingsPerBatch)]
    public long Commit_5000_batches() => Commit(MostBatches);

    /// <summary>One reading per message, as MQTT devices send at 20,000 messages a second: 200 batches of one reading.</summary>
    [Benchmark(OperationsPerInvoke = 200)]
    public long Commit_200_single_readings() => Commit(200, readingsPerBatch: 1);

    private long Commit(int count, int readingsPerBatch = ReadingsPerBatch)
    {
        for (var i = 0; i < count; i++)
        {
            var device = i % Devices;
            var readings = _readings[i].AsMemory(0, readingsPerBatch);
            var start = _nextMs[device];
            for (var j = 0; j < readingsPerBatch; j++)
            {
                readings.Span[j] = new VitalReading(VitalKind.HeartRate, start + j, 60 + (j % 40));
            }

            _nextMs[device] = start + readingsPerBatch;
            _batches[i] = new DeviceBatch(DeviceIds[device], PatientIds[device], ++_sequences[device], readings);
        }

        return _store.Commit(new ArraySegment<DeviceBatch>(_batches, 0, count), _outcomes.AsSpan(0, count));
    }

    private static readonly string[] DeviceIds = [.. Enumerable.Range(0, Devices).Select(i => $"watch-{i}")];

    private static readonly string[] PatientIds = [.. Enumerable.Range(0, Devices).Select(i => $"patient-{i}")];
}
