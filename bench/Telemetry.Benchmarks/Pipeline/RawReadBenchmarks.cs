using BenchmarkDotNet.Attributes;
using Microsoft.Extensions.Options;
using Telemetry.Core.Readings;
using Telemetry.Core.Rollups;
using Telemetry.Core.Storage;
using Telemetry.Core.Vitals;
using Telemetry.Storage.DuckDb;

namespace Telemetry.Benchmarks.Pipeline;

/// <summary>
/// The raw store's reads a patient's grain makes when it activates: the minute windows of yesterday and today,
/// aggregated from the raw readings, and the latest readings of each vital. Over a file holding two days of
/// one-a-minute heart rates and SpO2 for 500 patients (2.9 million readings, committed as the pipeline does, so they
/// are spread over the readings files as the WAL limit moves them).
/// </summary>
[MemoryDiagnoser]
public class RawReadBenchmarks
{
    private const int Patients = 500;
    private const int Minutes = 2 * 24 * 60;
    private const int AtOnce = 100;

    private DirectoryInfo _directory = null!;
    private DuckDbDatabase _database = null!;
    private DuckDbRawSeriesStore _store = null!;
    private long _fromMs;
    private long _toMs;
    private int _next;

    [GlobalSetup]
    public void Setup()
    {
        _directory = Directory.CreateTempSubdirectory("telemetry-raw-read-bench-");
        _database = new DuckDbDatabase(Options.Create(new DuckDbOptions { Path = Path.Combine(_directory.FullName, "telemetry.duckdb") }));
        _store = new DuckDbRawSeriesStore(_database);
        _toMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 60_000 * 60_000;
        _fromMs = _toMs - (Minutes * 60_000L);

        // An hour of every patient's readings per commit, as a busy server's flushes carry many devices each.
        var sequence = 0UL;
        for (var hour = 0; hour < Minutes / 60; hour++)
        {
            sequence++;
            var batches = new DeviceBatch[Patients];
            for (var patient = 0; patient < Patients; patient++)
            {
                var readings = new VitalReading[120];
                for (var minute = 0; minute < 60; minute++)
                {
                    var at = _fromMs + (((hour * 60) + minute) * 60_000L);
                    readings[2 * minute] = new VitalReading(VitalKind.HeartRate, at, 60 + ((patient + minute) % 40));
                    readings[(2 * minute) + 1] = new VitalReading(VitalKind.OxygenSaturation, at, 94 + (minute % 5));
                }

                batches[patient] = new DeviceBatch($"watch-{patient}", $"patient-{patient}", sequence, readings);
            }

            _store.Commit(batches, new BatchOutcome[Patients]);
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _store.Dispose();
        _database.Dispose();
        _directory.Delete(recursive: true);
    }

    /// <summary>Yesterday's and today's minute windows of one patient, as a grain rebuilds them.</summary>
    [Benchmark(Baseline = true)]
    public async Task<int> Minute_windows_of_two_days() =>
        (await _store.AggregateAsync(NextPatient(), _fromMs, _toMs, Resolution.Minute)).Windows.Count;

    /// <summary>
    /// The same for 100 patients whose grains activate together (after a start, or as a fleet comes back), per patient.
    /// </summary>
    [Benchmark(OperationsPerInvoke = AtOnce)]
    public async Task<int> Minute_windows_of_two_days_100_patients_at_once()
    {
        var reads = new Task<RawAggregate>[AtOnce];
        for (var i = 0; i < AtOnce; i++)
        {
            reads[i] = _store.AggregateAsync(NextPatient(), _fromMs, _toMs, Resolution.Minute);
        }

        var windows = 0;
        foreach (var aggregate in await Task.WhenAll(reads))
        {
            windows += aggregate.Windows.Count;
        }

        return windows;
    }

    /// <summary>The latest 10 readings of each of two vitals of one patient.</summary>
    [Benchmark]
    public async Task<int> Latest_readings() =>
        (await _store.ReadLatestAsync(NextPatient(), [VitalKind.HeartRate, VitalKind.OxygenSaturation], _fromMs, _toMs, perKind: 10)).Count;

    private string NextPatient() => $"patient-{_next++ % Patients}";
}
