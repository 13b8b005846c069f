using System.ComponentModel.DataAnnotations;

namespace Telemetry.Storage.DuckDb;

/// <summary>Where the embedded store keeps its file. Bound from <c>Telemetry:Storage:DuckDb</c>.</summary>
public sealed class DuckDbOptions
{
    public const string Section = "Telemetry:Storage:DuckDb";

    /// <summary>The database file; relative paths are taken from the working directory. Default <c>data/telemetry.duckdb</c>.</summary>
    [Required]
    public string Path { get; set; } = "data/telemetry.duckdb";

    /// <summary>Where a file kept beside the database lives (the audit log, the server's secrets): the database's folder.</summary>
    public string Beside(string fileName) =>
        System.IO.Path.Combine(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(Path))!, fileName);

    /// <summary>
    /// The most memory DuckDB keeps (its cache of the file; larger work spills to disk). DuckDB's own default is 80% of
    /// the machine's memory, which the cache grows into as the file grows. Default <c>2GB</c>.
    /// </summary>
    [Required]
    [RegularExpression(@"^\d{1,6}(\.\d{1,3})?\s?(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$", ErrorMessage = "Telemetry:Storage:DuckDb:MemoryLimit is a size such as 512MB or 2GB.")]
    public string MemoryLimit { get; set; } = "2GB";

    /// <summary>
    /// How large a file's write-ahead log grows before it is checkpointed into the file: the commit loop then moves the
    /// readings to the other readings file, so the checkpoint holds no commit (see the README's section on the DuckDB store).
    /// Default 16 MiB, DuckDB's own threshold.
    /// </summary>
    [Range(typeof(long), "65536", "17179869184")]
    public long CheckpointWalBytes { get; set; } = 16L << 20;

    /// <summary>
    /// How many threads DuckDB's executor uses; 0 (the default) leaves DuckDB its own choice, one per core. One thread
    /// runs each commit's insert on the commit loop's own thread, where it does not wait behind a checkpoint's work on
    /// DuckDB's worker: on two cores that halved the server's wait p99 at half the batched rate, but cost a quarter of
    /// the highest rate of one reading per message (see docs/performance.md), and runs every read on one core.
    /// </summary>
    [Range(0, 1024)]
    public int Threads { get; set; }

    /// <summary>The most rollups written in one transaction.</summary>
    [Range(1, 1_000_000)]
    public int RollupBatchSize { get; set; } = 10_000;

    /// <summary>
    /// How long a write of grain state or of the alert log waits, at most, in the journal beside the database file
    /// (<c>&lt;name&gt;.state-journal</c>) before the file takes it with the others; a read of the alert log, or of a grain's
    /// state the journal holds, has the file take them at once. The write is durable, and answered, once it is in the
    /// journal. Default half a second.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00", "1.00:00:00")]
    public TimeSpan JournalDelay { get; set; } = TimeSpan.FromMilliseconds(500);

    /// <summary>How often rollup windows of closed buckets are packed into blocks (see the README's architecture section). Default one minute.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "7.00:00:00")]
    public TimeSpan CompactionInterval { get; set; } = TimeSpan.FromMinutes(1);
}
