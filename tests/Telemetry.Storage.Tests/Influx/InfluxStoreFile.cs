using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Telemetry.Core.Readings;
using Telemetry.Storage.DuckDb;
using Telemetry.Storage.Influx;
using Telemetry.Storage.Tests.DuckDb;

namespace Telemetry.Storage.Tests.Influx;

/// <summary>An InfluxDB raw store pointed at <paramref name="url"/>, with its local file (the batch ledger); it can be reopened as a restart does.</summary>
internal sealed class InfluxStoreFile(string url, Action<InfluxOptions>? configure = null) : IDisposable
{
    private DuckDbDatabase? _database;
    private InfluxRawSeriesStore? _store;

    public TemporaryDirectory Directory { get; } = new();

    public InfluxOptions Options { get; } = Configure(url, configure);

    public InfluxRawSeriesStore Store => _store ??= Open();

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

    private static InfluxOptions Configure(string url, Action<InfluxOptions>? configure)
    {
        var options = new InfluxOptions { Url = url, Token = "test-token-not-secret", Org = "clinic", Bucket = "vitals" };
        configure?.Invoke(options);
        return options;
    }

    private InfluxRawSeriesStore Open()
    {
        _database = new DuckDbDatabase(Directory.Options);
        return new InfluxRawSeriesStore(Microsoft.Extensions.Options.Options.Create(Options), _database, TimeProvider.System, NullLogger<InfluxRawSeriesStore>.Instance);
    }

    private void Close()
    {
        _store?.Dispose();
        _database?.Dispose();
        _store = null;
        _database = null;
    }
}
