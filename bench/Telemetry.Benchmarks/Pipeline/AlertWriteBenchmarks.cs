using BenchmarkDotNet.Attributes;
using Microsoft.Extensions.Options;
using Orleans.Runtime;
using Orleans.Storage;
using Telemetry.Core.Alerts;
using Telemetry.Core.Vitals;
using Telemetry.Storage.DuckDb;

namespace Telemetry.Benchmarks.Pipeline;

/// <summary>
/// What one alert change costs the DuckDB store, as a patient's grain makes it: its alert state written with the event
/// in its outbox (one record of the state journal, flushed to the disk, which stores the event in the alert log with
/// the state), then the event handed to the alert store (which finds it stored). Per change; for one patient alone,
/// and for fifty patients whose changes come at once (they group into shared records). The database file takes the
/// records in the background, within half a second, as the server's does.
/// </summary>
/// <remarks>
/// The state serialises to an opaque 1 KB blob (about what a patient's alert state with a few rules serialises to): the
/// serializer is not what is measured. Each change alternates raise and clear, with the patient's next event number.
/// </remarks>
[MemoryDiagnoser]
public class AlertWriteBenchmarks
{
    private const int Patients = 50;
    private static readonly DateTimeOffset T0 = DateTimeOffset.UtcNow;

    private readonly BenchState[] _outboxes = [.. Enumerable.Range(0, Patients).Select(_ => new BenchState())];
    private readonly GrainState<BenchState>[] _states = new GrainState<BenchState>[Patients];
    private readonly long[] _seqs = new long[Patients];
    private DirectoryInfo _directory = null!;
    private DuckDbDatabase _database = null!;
    private DuckDbGrainStorage _storage = null!;
    private DuckDbAlertStore _alerts = null!;

    [GlobalSetup]
    public void Setup()
    {
        _directory = Directory.CreateTempSubdirectory("telemetry-alert-bench-");
        _database = new DuckDbDatabase(Options.Create(new DuckDbOptions { Path = Path.Combine(_directory.FullName, "telemetry.duckdb") }));
        _storage = new DuckDbGrainStorage(_database, new BlobSerializer());
        _alerts = new DuckDbAlertStore(_database);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _database.Dispose();
        _directory.Delete(recursive: true);
    }

    /// <summary>A patient's alert change while nothing else is written.</summary>
    [Benchmark(Baseline = true)]
    public Task One_patient_alone() => ChangeAsync(0);

    /// <summary>Fifty patients' alert changes at once, as a burst of alerts makes them.</summary>
    [Benchmark(OperationsPerInvoke = Patients)]
    public Task Fifty_patients_at_once() => Task.WhenAll(Enumerable.Range(0, Patients).Select(ChangeAsync));

    private async Task ChangeAsync(int patient)
    {
        var patientId = $"p-bench-{patient}";
        var seq = ++_seqs[patient];
        var raised = seq % 2 == 1;
        var alert = new Alert(
            $"{patientId}~{(seq + 1) / 2}", patientId, "hr-high", AlertRuleType.Threshold, AlertCategory.Clinical, AlertPriority.Medium,
            VitalKind.HeartRate, raised ? AlertStatus.Active : AlertStatus.Cleared, "Heart rate 130 /min is at or above 120 /min", 130, T0, T0,
            ClearedAt: raised ? null : T0);
        var change = new AlertEvent(patientId, seq, raised ? AlertEventType.Raised : AlertEventType.Cleared, T0, alert);
        var outbox = _outboxes[patient];
        outbox.Outbox.Add(change);
        await _storage.WriteStateAsync("alerts", GrainId.Create("patient", patientId), _states[patient] ??= new GrainState<BenchState>(outbox));
        await _alerts.AppendAsync([change]);
        outbox.Outbox.Clear();
    }

    private sealed class BenchState : IAlertOutbox
    {
        public byte[] Blob { get; } = new byte[1024];

        public List<AlertEvent> Outbox { get; } = [];

        public IReadOnlyList<AlertEvent> PendingEvents => Outbox;
    }

    private sealed class BlobSerializer : IGrainStorageSerializer
    {
        public BinaryData Serialize<T>(T? input) => new(((BenchState)(object)input!).Blob);

        public T Deserialize<T>(BinaryData input) => throw new NotSupportedException("the benchmark only writes");
    }
}
