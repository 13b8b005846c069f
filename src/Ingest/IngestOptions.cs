using System.ComponentModel.DataAnnotations;
using Telemetry.Ingest.Codecs;

namespace Telemetry.Ingest;

/// <summary>Bounds and validation of the ingest path. Bound from <c>Telemetry:Ingest</c>.</summary>
public sealed class IngestOptions
{
    public const string Section = "Telemetry:Ingest";

    /// <summary>Batches waiting for commit before senders are held back (no ack until there is room).</summary>
    [Range(1, 1_000_000)]
    public int CommitQueueCapacity { get; set; } = 4_096;

    /// <summary>
    /// How long a batch may wait for its commit before health turns unready: the store is slower than the load, and
    /// devices are acknowledged late.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00.100", "01:00:00")]
    public TimeSpan SlowCommitWait { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Readings committed and handed on for their patients' grains (the calls made, or about to be) that the grains have
    /// not yet answered for. Beyond it the commit loop waits for grains to catch up (and devices are acknowledged late):
    /// live state never falls unboundedly behind the store. About 24 bytes each. The default (about 96 MB) holds two
    /// seconds of 2,000,000 readings a second: enough for a fleet of new patients, whose grains activate first (reading
    /// their day back from the store), to join at full rate without holding back the acks of everyone else.
    /// </summary>
    [Range(100, 100_000_000)]
    public int MaxReadingsInGrainCalls { get; set; } = 4_000_000;

    /// <summary>
    /// The most readings committed in one transaction (group commit). Commits reach it only when readings arrive faster
    /// than commits take them: while a backlog drains (a fleet joining, a store that paused) or near the highest rates.
    /// The default is above two of DuckDB's row groups (122,880 rows each), which DuckDB writes to the file compressed
    /// as they fill instead of into its WAL and then its table: such a commit costs about two fifths less per reading
    /// than one of 100,000.
    /// </summary>
    [Range(1, 10_000_000)]
    public int MaxReadingsPerCommit { get; set; } = 250_000;

    /// <summary>
    /// The shortest time from the start of one group commit to the next while batches keep coming: a commit due sooner
    /// waits the rest, and the batches that arrive meanwhile join it. Without it a steady stream of small messages (one
    /// reading each, from many devices) makes a commit, and a WAL fsync, of every few: the default halves the server's
    /// CPU at 2,000 one-reading messages a second and takes a tenth to a fifth off it at 20,000–30,000, for a
    /// millisecond or two more ack latency. A commit that itself took the interval or longer, the first after a quiet
    /// spell and one with 256 batches or more waiting do not wait. Zero commits whatever has gathered as soon as the
    /// last commit ends.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00", "00:00:01")]
    public TimeSpan CommitInterval { get; set; } = TimeSpan.FromMilliseconds(2);

    /// <summary>
    /// Device tokens an address may have refused in a minute (over MQTT, gRPC and uploads together) before its
    /// sign-ins are held for <see cref="DeviceSignInLockout"/>: each refusal costs a look in the device registry. High
    /// enough for many devices behind one carrier's address, each retrying a revoked token every few seconds.
    /// </summary>
    [Range(1, 1_000_000)]
    public int FailedDeviceSignInsPerMinute { get; set; } = 300;

    /// <summary>How long an address over <see cref="FailedDeviceSignInsPerMinute"/> has its device sign-ins held.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "01:00:00")]
    public TimeSpan DeviceSignInLockout { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>The most readings one message or batch may carry.</summary>
    [Range(1, 1_000_000)]
    public int MaxReadingsPerBatch { get; set; } = 10_000;

    /// <summary>The largest MQTT payload or gRPC message accepted, in bytes.</summary>
    [Range(64, 64 * 1024 * 1024)]
    public int MaxMessageBytes { get; set; } = 256 * 1024;

    /// <summary>How far ahead of the server's clock a reading's time may be.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "1.00:00:00")]
    public TimeSpan MaxFutureSkew { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>How old a reading may be and still be taken (backfill after a phone was offline).</summary>
    [Range(typeof(TimeSpan), "00:01:00", "3650.00:00:00")]
    public TimeSpan BackfillHorizon { get; set; } = TimeSpan.FromDays(30);

    /// <summary>
    /// On shutdown, how long publishes already being committed may take to get their acks before every device is told
    /// to reconnect (MQTT DISCONNECT 0x8B, gRPC UNAVAILABLE). A device resends what it has no ack for.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00", "00:10:00")]
    public TimeSpan DrainTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>The largest bulk upload (<c>POST /api/devices/{id}/readings</c>) accepted, in bytes, as sent and, for a gzip-compressed one, as expanded. A day of 1 Hz heart rate as JSON is about 7 MB.</summary>
    [Range(1_024, long.MaxValue)]
    public long MaxUploadBytes { get; set; } = 256L * 1024 * 1024;

    /// <summary>Readings of a bulk upload committed together; the upload is committed in batches of this size as it streams in.</summary>
    [Range(1, 1_000_000)]
    public int UploadCommitReadings { get; set; } = 5_000;

    /// <summary>MQTT publishes or gRPC batches one device may send per second (bursts of twice that are allowed).</summary>
    [Range(1, 1_000_000)]
    public int MaxMessagesPerSecondPerDevice { get; set; } = 200;

    /// <summary>Bulk uploads one device may start per minute.</summary>
    [Range(1, 100_000)]
    public int MaxUploadsPerMinutePerDevice { get; set; } = 30;

    /// <summary>Batches a gRPC stream may have awaiting commit before it stops reading.</summary>
    [Range(1, 100_000)]
    public int MaxInFlightBatchesPerStream { get; set; } = 256;

    /// <summary>
    /// QoS 1 publishes one MQTT 5 connection may have awaiting commit, or PUBACKs not yet sent, before the broker stops
    /// reading it. The broker reads a connection's next publish while the ones before it commit, and sends their PUBACKs
    /// in order as the commits complete; 1 answers a connection's publishes one at a time.
    /// </summary>
    [Range(1, 65_535)]
    public int MaxInFlightPublishesPerConnection { get; set; } = 32;

    public ValidationLimits ToLimits() => new(MaxFutureSkew, BackfillHorizon, MaxReadingsPerBatch);
}
