using Microsoft.Extensions.Logging.Abstractions;
using Telemetry.Core.Readings;
using Telemetry.Storage.DuckDb;
using Telemetry.Storage.Influx;
using Telemetry.Storage.Tests.DuckDb;

namespace Telemetry.Storage.Tests.Influx;

/// <summary>
/// The raw store on a series server at a URL (InfluxDB's API, or VictoriaMetrics' for reads), with its local file (the
/// batch ledger); it can be reopened as a restart does.
/// </summary>
internal sealed class InfluxStoreFile : IDisposable
{
    private readonly Func<SeriesBackend> _connect;
    private SeriesBackend? _backend;
    private DuckDbDatabase? _database;
    private InfluxRawSeriesStore? _store;

    /// <summary>Reads through Flux, as from InfluxDB.</summary>
    public InfluxStoreFile(string url, Action<InfluxOptions>? configure = null)
    {
        var options = new InfluxOptions { Url = url, Token = "test-token-not-secret", Org = "clinic", Bucket = "vitals" };
        configure?.Invoke(options);
        _connect = () => SeriesBackend.ForInfluxDb(options, TimeProvider.System, NullLogger.Instance);
    }

    private InfluxStoreFile(Func<SeriesBackend> connect) => _connect = connect;

    /// <summary>Reads through VictoriaMetrics' export API.</summary>
    public static InfluxStoreFile ForVictoriaMetrics(string url, Action<SeriesServerOptions>? configure = null)
    {
        var options = new VictoriaMetricsOptions { Url = url };
        configure?.Invoke(options);
        return new(() => SeriesBackend.ForVictoriaMetrics(options, TimeProvider.System, NullLogger.Instance));
    }

    public TemporaryDirectory Directory { get; } = new();

    public SeriesBackend Backend => _backend ??= _connect();

    public InfluxRawSeriesStore Store => _store ??= Open();

    /// <summary>The local file (opened with the store).</summary>
    public DuckDbDatabase Database
    {
        get
        {
            _ = Store;
            return _database!;
        }
    }

    public async Task<(long CommitId, BatchOutcome[] Outcomes)> CommitAsync(params DeviceBatch[] batches)
    {
        var outcomes = new BatchOutcome[batches.Length];
        var commitId = await Store.CommitAsync(batches, outcomes);
        return (commitId, outcomes);
    }

    public void Reopen()
    {
        Close();
        _store = Open();
    }

    public void Dispose()
    {
        Close();
        Directory.Dispose();
    }

    private InfluxRawSeriesStore Open()
    {
        _database = new DuckDbDatabase(Directory.Options);
        return new InfluxRawSeriesStore(Backend, _database, TimeProvider.System, NullLogger<InfluxRawSeriesStore>.Instance);
    }

    private void Close()
    {
        _store?.Dispose();
        _database?.Dispose();
        _backend?.Dispose();
        _store = null;
        _database = null;
        _backend = null;
    }
}
