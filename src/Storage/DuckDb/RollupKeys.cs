using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;
using Telemetry.Core.Rollups;
using Telemetry.Core.Vitals;

namespace Telemetry.Storage.DuckDb;

/// <summary>
/// The keys one patient's windows are found by. Windows are grouped into buckets of a fixed number of windows per
/// resolution; <see cref="Bucket"/> names one series' bucket and is what the rollup tables are indexed on (DuckDB uses
/// an ART index for a single-column equality only). <see cref="Series"/> is a second, independent hash that every row
/// read is checked against, so two series whose bucket hashes collide never see each other's windows.
/// </summary>
public static class RollupKeys
{
    private const long BucketSeed = 0x5445_4C45_4D31;
    private const long SeriesSeed = 0x5445_4C45_4D32;

    /// <summary>How many windows one bucket spans: an hour of minutes, a day of hours, 32 days.</summary>
    public static int WindowsPerBucket(Resolution resolution) => resolution switch
    {
        Resolution.Minute => 60,
        Resolution.Hour => 24,
        Resolution.Day => 32,
        _ => throw new ArgumentOutOfRangeException(nameof(resolution), resolution, null),
    };

    /// <summary>The length of one bucket of <paramref name="resolution"/>, in milliseconds.</summary>
    public static long BucketMilliseconds(Resolution resolution) => WindowsPerBucket(resolution) * resolution.Milliseconds();

    /// <summary>The start of the bucket that holds the window starting at <paramref name="windowStartMs"/>.</summary>
    public static long BucketStart(Resolution resolution, long windowStartMs)
    {
        var length = BucketMilliseconds(resolution);
        return windowStartMs - (((windowStartMs % length) + length) % length);
    }

    /// <summary>The starts of every bucket that may hold a window starting in [<paramref name="fromMs"/>, <paramref name="toMs"/>).</summary>
    public static IEnumerable<long> BucketStarts(Resolution resolution, long fromMs, long toMs)
    {
        var length = BucketMilliseconds(resolution);
        for (var start = BucketStart(resolution, fromMs); start < toMs; start += length)
        {
            yield return start;
        }
    }

    public static long Bucket(string patientId, VitalKind kind, Resolution resolution, long bucketStartMs) =>
        Hash(patientId, kind, resolution, bucketStartMs, BucketSeed);

    public static long Series(string patientId, VitalKind kind, Resolution resolution) =>
        Hash(patientId, kind, resolution, 0, SeriesSeed);

    private static long Hash(string patientId, VitalKind kind, Resolution resolution, long value, long seed)
    {
        // Patient ids are short (the API bounds them); an unusually long one is hashed from a heap buffer.
        var length = Encoding.UTF8.GetMaxByteCount(patientId.Length) + 13;
        var heap = length <= 512 ? null : new byte[length];
        Span<byte> buffer = heap ?? stackalloc byte[512];
        var written = Encoding.UTF8.GetBytes(patientId, buffer);
        buffer[written++] = 0;
        buffer[written++] = (byte)kind;
        BinaryPrimitives.WriteInt32LittleEndian(buffer[written..], (int)resolution);
        written += 4;
        BinaryPrimitives.WriteInt64LittleEndian(buffer[written..], value);
        written += 8;
        return unchecked((long)XxHash3.HashToUInt64(buffer[..written], seed));
    }
}
