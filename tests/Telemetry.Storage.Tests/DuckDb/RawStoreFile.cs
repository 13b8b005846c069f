using Telemetry.Storage.DuckDb;

namespace Telemetry.Storage.Tests.DuckDb;

/// <summary>A raw series store over its own temporary DuckDB file, which can be closed and opened again.</summary>
internal sealed class RawStoreFile : IDisposable
{
    public RawStoreFile()
    {
        Database = new DuckDbDatabase(Directory.Options);
        Store = new DuckDbRawSeriesStore(Database);
    }

    public TemporaryDirectory Directory { get; } = new();

    public DuckDbDatabase Database { get; private set; }

    public DuckDbRawSeriesStore Store { get; private set; }

    /// <summary>
    /// Closes every connection to the file and opens it again, as a restart does; <paramref name="between"/> runs when it
    /// is closed (to leave behind what a killed server would).
    /// </summary>
    public void Reopen(Action? between = null)
    {
        Store.Dispose();
        Database.Dispose();
        between?.Invoke();
        Database = new DuckDbDatabase(Directory.Options);
        Store = new DuckDbRawSeriesStore(Database);
    }

    public void Dispose()
    {
        Store.Dispose();
        Database.Dispose();
        Directory.Dispose();
    }
}
