using BenchmarkDotNet.Attributes;
using Telemetry.Core.Grains;
using Telemetry.Core.Readings;
using Telemetry.Core.Vitals;

namespace Telemetry.Benchmarks.Pipeline;

/// <summary>
/// The pipeline's grain calls after a commit, with the silo in this process over a DuckDB file as the server runs it:
/// one patient's call with 50 heart rates, and one flush's calls to 100 patients at once. Each call folds the readings
/// into the patient's windows, runs its alert rules (none set: the default), and writes the windows that closed.
/// Per reading; and, per call, a flush's calls to 100 patients with one reading each (devices sending a reading per
/// message, whose batches rarely share a commit).
/// </summary>
[MemoryDiagnoser]
public class GrainBatchBenchmarks
{
    private const int Patients = 100;
    private const int ReadingsPerCall = 50;
    private const long ReadingSpacingMs = 20;

    private readonly VitalReading[][] _readings = [.. Enumerable.Range(0, Patients).Select(_ => new VitalReading[ReadingsPerCall])];
    private readonly VitalReading[][] _single = [.. Enumerable.Range(0, Patients).Select(_ => new VitalReading[1])];
    private readonly long[] _nextMs = new long[Patients];
    private readonly Task[] _calls = new Task[Patients];
    private InProcessSilo _silo = null!;
    private IPatientGrain[] _grains = null!;
    private long _commitId;

    [GlobalSetup]
    public void Setup()
    {
        _silo = InProcessSilo.Start();
        _grains = [.. Enumerable.Range(0, Patients).Select(i => _silo.Grains.GetGrain<IPatientGrain>($"patient-{i}"))];
        Array.Fill(_nextMs, DateTimeOffset.UtcNow.AddHours(-1).ToUnixTimeMilliseconds());

        // Activate every patient first: activation (a rebuild from the raw store) is not what is measured.
        Flush(_readings);
    }

    [GlobalCleanup]
    public void Cleanup() => _silo.Dispose();

    [Benchmark(Baseline = true, OperationsPerInvoke = ReadingsPerCall)]
    public Task One_patient() => Call(0, _readings);

    [Benchmark(OperationsPerInvoke = Patients * ReadingsPerCall)]
    public void A_flush_to_100_patients() => Flush(_readings);

    [Benchmark(OperationsPerInvoke = Patients)]
    public void A_flush_of_one_reading_each_to_100_patients_per_call() => Flush(_single);

    private void Flush(VitalReading[][] readings)
    {
        for (var i = 0; i < Patients; i++)
        {
            _calls[i] = Call(i, readings);
        }

        Task.WaitAll(_calls);
    }

    private Task Call(int patient, VitalReading[][] each)
    {
        // The arrays are rewritten only after the previous call returned: the grain keeps no reference to them.
        var readings = each[patient];
        var start = _nextMs[patient];
        for (var j = 0; j < readings.Length; j++)
        {
            readings[j] = new VitalReading(VitalKind.HeartRate, start + (j * ReadingSpacingMs), 60 + (j % 40));
        }

        _nextMs[patient] = start + (readings.Length * ReadingSpacingMs);
        return _grains[patient].ApplyAsync(new PatientReadings(Interlocked.Increment(ref _commitId), readings)).AsTask();
    }
}
