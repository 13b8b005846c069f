using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;
using Telemetry.Core.Rollups;
using Telemetry.Core.Vitals;

namespace Telemetry.Storage.DuckDb;

/// <summary>
/// The keys one patient's windows are found by. DuckDB uses an ART index only for a single-column equality, and each
/// key looked up costs tens of microseconds, so keys are hashes chosen to make a trend a few lookups:
/// <list type="bullet">
/// <item><see cref="Series"/> names one patient's vital at one resolution; the rows not yet packed are found by it.</item>
/// <item>Windows are packed by bucket (a fixed number of windows per resolution) into blocks, and blocks are found by
/// <see cref="Group"/>, which names a run of buckets, so a 30-day trend of hours is two lookups.</item>
/// <item><see cref="Check"/> is a third, independent hash that every row read is compared with, so two series whose
/// keys collide never see each other's windows.</item>
/// </list>
/// </summary>
public static class RollupKeys
{
    private const long SeriesSeed = 0x5445_4C45_4D31;
    private const long GroupSeed = 0x5445_4C45_4D32;
    private const long CheckSeed = 0x5445_4C45_4D33;

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

    /// <summary>How many buckets one group of blocks spans: a day of hour blocks, 32 days of day blocks, 512 days.</summary>
    public static int BucketsPerGroup(Resolution resolution) => resolution switch
    {
        Resolution.Minute => 24,
        Resolution.Hour => 32,
        Resolution.Day => 16,
        _ => throw new ArgumentOutOfRangeException(nameof(resolution), resolution, null),
    };

    /// <summary>The start of the group that holds the bucket starting at <paramref name="bucketStartMs"/>.</summary>
    public static long GroupStart(Resolution resolution, long bucketStartMs)
    {
        var length = BucketMilliseconds(resolution) * BucketsPerGroup(resolution);
        return bucketStartMs - (((bucketStartMs % length) + length) % length);
    }

    /// <summary>The starts of every group that may hold a window starting in [<paramref name="fromMs"/>, <paramref name="toMs"/>).</summary>
    public static IEnumerable<long> GroupStarts(Resolution resolution, long fromMs, long toMs)
    {
        var length = BucketMilliseconds(resolution) * BucketsPerGroup(resolution);
        for (var start = GroupStart(resolution, BucketStart(resolution, fromMs)); start < toMs; start += length)
        {
            yield return start;
        }
    }

    public static long Series(string patientId, VitalKind kind, Resolution resolution) =>
        Hash(patientId, kind, resolution, 0, SeriesSeed);

    public static long Group(string patientId, VitalKind kind, Resolution resolution, long groupStartMs) =>
        Hash(patientId, kind, resolution, groupStartMs, GroupSeed);

    public static long Check(string patientId, VitalKind kind, Resolution resolution) =>
        Hash(patientId, kind, resolution, 0, CheckSeed);

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
