using System.Buffers;

namespace Telemetry.Ingest.Tests.Codecs;

/// <summary>A piece of a multi-segment sequence, as a pipe reader hands a payload that arrived in several reads.</summary>
internal sealed class Segment : ReadOnlySequenceSegment<byte>
{
    private Segment(ReadOnlyMemory<byte> memory, long runningIndex)
    {
        Memory = memory;
        RunningIndex = runningIndex;
    }

    /// <summary>The bytes as two segments, the second starting at <paramref name="at"/>.</summary>
    public static ReadOnlySequence<byte> Split(byte[] bytes, int at)
    {
        var first = new Segment(bytes.AsMemory(0, at), 0);
        var second = new Segment(bytes.AsMemory(at), at);
        first.Next = second;
        return new ReadOnlySequence<byte>(first, 0, second, second.Memory.Length);
    }
}
