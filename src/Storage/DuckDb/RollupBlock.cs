using System.Buffers.Binary;
using Telemetry.Core.Rollups;

namespace Telemetry.Storage.DuckDb;

/// <summary>
/// One series' windows of one bucket packed into a single value, oldest first: a version byte, then 64 bytes per
/// window (start, count, sum, min, max, sum of squares, last, time of last; little-endian). A trend over 30 days of
/// hours reads 31 of these instead of 720 rows scattered through the file.
/// </summary>
public static class RollupBlock
{
    private const byte Version = 1;
    private const int WindowBytes = 64;

    public static byte[] Encode(IReadOnlyList<RollupWindow> windows)
    {
        var bytes = new byte[1 + (windows.Count * WindowBytes)];
        bytes[0] = Version;
        var span = bytes.AsSpan(1);
        foreach (var window in windows)
        {
            BinaryPrimitives.WriteInt64LittleEndian(span, window.StartMs);
            BinaryPrimitives.WriteInt64LittleEndian(span[8..], window.Count);
            BinaryPrimitives.WriteDoubleLittleEndian(span[16..], window.Sum);
            BinaryPrimitives.WriteDoubleLittleEndian(span[24..], window.Min);
            BinaryPrimitives.WriteDoubleLittleEndian(span[32..], window.Max);
            BinaryPrimitives.WriteDoubleLittleEndian(span[40..], window.SumOfSquares);
            BinaryPrimitives.WriteDoubleLittleEndian(span[48..], window.Last);
            BinaryPrimitives.WriteInt64LittleEndian(span[56..], window.LastMs);
            span = span[WindowBytes..];
        }

        return bytes;
    }

    /// <summary>Adds the windows of <paramref name="block"/> that start in [<paramref name="fromMs"/>, <paramref name="toMs"/>) to <paramref name="windows"/>.</summary>
    public static void Decode(ReadOnlySpan<byte> block, long fromMs, long toMs, ICollection<RollupWindow> windows)
    {
        if (block.Length == 0 || block[0] != Version || (block.Length - 1) % WindowBytes != 0)
        {
            throw new InvalidDataException($"A rollup block of {block.Length} bytes is not in format version {Version}.");
        }

        for (var span = block[1..]; !span.IsEmpty; span = span[WindowBytes..])
        {
            var startMs = BinaryPrimitives.ReadInt64LittleEndian(span);
            if (startMs >= fromMs && startMs < toMs)
            {
                windows.Add(new RollupWindow(
                    startMs,
                    BinaryPrimitives.ReadInt64LittleEndian(span[8..]),
                    BinaryPrimitives.ReadDoubleLittleEndian(span[16..]),
                    BinaryPrimitives.ReadDoubleLittleEndian(span[24..]),
                    BinaryPrimitives.ReadDoubleLittleEndian(span[32..]),
                    BinaryPrimitives.ReadDoubleLittleEndian(span[40..]),
                    BinaryPrimitives.ReadDoubleLittleEndian(span[48..]),
                    BinaryPrimitives.ReadInt64LittleEndian(span[56..])));
            }
        }
    }
}
