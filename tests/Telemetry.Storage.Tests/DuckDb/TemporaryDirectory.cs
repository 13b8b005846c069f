using Microsoft.Extensions.Options;
using Telemetry.Storage.DuckDb;

namespace Telemetry.Storage.Tests.DuckDb;

/// <summary>A fresh directory for one test's database file, deleted afterwards.</summary>
internal sealed class TemporaryDirectory : IDisposable
{
    public TemporaryDirectory()
    {
        Path = System.IO.Path.GetFullPath(System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"telemetry-storage-tests-{Guid.NewGuid():N}"));
        Directory.CreateDirectory(Path);
        Options = Microsoft.Extensions.Options.Options.Create(new DuckDbOptions { Path = System.IO.Path.Combine(Path, "telemetry.duckdb") });
    }

    public string Path { get; }

    public IOptions<DuckDbOptions> Options { get; }

    public void Dispose()
    {
        if (Directory.Exists(Path))
        {
            Directory.Delete(Path, recursive: true);
        }
    }
}
