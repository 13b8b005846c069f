using System.Numerics;

namespace Telemetry.Storage.DuckDb;

/// <summary>
/// The batch sequence numbers one device has committed, as sorted, disjoint ranges. A device that sends in order has
/// one range; a gap left by a batch that failed to commit stays open until that batch is sent again.
/// </summary>
internal sealed class SequenceRanges
{
    /// <summary>
    /// The most ranges kept per device. Past it the oldest are forgotten: a batch with a forgotten number is treated as
    /// new, and its readings are still stored once by the reading-level check.
    /// </summary>
    public const int MaxRanges = 4_096;

    // Exactly as long as there are ranges while there are few (one, for most devices: the ledger keeps this for every
    // device it has seen); past SmallRanges the room doubles, so that a device whose every batch opens a gap (one that
    // numbers its batches by a clock, say) costs an allocation now and then, not a copy of all its ranges per batch.
    private const int SmallRanges = 4;
    private (ulong First, ulong Last)[] _ranges = [];
    private int _count;

    public IReadOnlyList<(ulong First, ulong Last)> Ranges => new ArraySegment<(ulong First, ulong Last)>(_ranges, 0, _count);

    public bool Contains(ulong sequence)
    {
        var index = FindFirstEndingAtOrAfter(sequence);
        return index < _count && _ranges[index].First <= sequence;
    }

    public void Add(ulong sequence) => Add(sequence, sequence);

    /// <summary>Adds [<paramref name="first"/>, <paramref name="last"/>], keeping at most <paramref name="maxRanges"/> ranges (the latest).</summary>
    public void Add(ulong first, ulong last, int maxRanges = MaxRanges)
    {
        if (_count > maxRanges)
        {
            TrimTo(maxRanges);
        }

        // Merge with every range that overlaps or touches [first, last].
        var index = FindFirstEndingAtOrAfter(first == 0 ? 0 : first - 1);
        var end = index;
        while (end < _count && (last == ulong.MaxValue || _ranges[end].First <= last + 1))
        {
            first = Math.Min(first, _ranges[end].First);
            last = Math.Max(last, _ranges[end].Last);
            end++;
        }

        if (end - index == 1)
        {
            _ranges[index] = (first, last);
            return;
        }

        if (end == index && _count >= maxRanges)
        {
            // Past the most kept, the oldest goes: the new range itself when it is older than every one kept.
            if (index > 0)
            {
                Array.Copy(_ranges, 1, _ranges, 0, index - 1);
                _ranges[index - 1] = (first, last);
            }

            return;
        }

        // The merged range replaces ranges index..end-1 (none when it touches none).
        var count = _count - (end - index) + 1;
        if (count > _ranges.Length)
        {
            var grown = new (ulong First, ulong Last)[count <= SmallRanges ? count : Math.Min(MaxRanges, (int)BitOperations.RoundUpToPowerOf2((uint)count))];
            Array.Copy(_ranges, 0, grown, 0, index);
            grown[index] = (first, last);
            Array.Copy(_ranges, end, grown, index + 1, _count - end);
            _ranges = grown;
        }
        else
        {
            Array.Copy(_ranges, end, _ranges, index + 1, _count - end);
            _ranges[index] = (first, last);
            if (count <= SmallRanges && _ranges.Length > SmallRanges)
            {
                _ranges = _ranges[..count];
            }
            else if (count < _count)
            {
                Array.Clear(_ranges, count, _count - count);
            }
        }

        _count = count;
    }

    /// <summary>Forgets the oldest ranges past the latest <paramref name="maxRanges"/>.</summary>
    public void TrimTo(int maxRanges)
    {
        if (_count <= maxRanges)
        {
            return;
        }

        var kept = new (ulong First, ulong Last)[maxRanges];
        Array.Copy(_ranges, _count - maxRanges, kept, 0, maxRanges);
        _ranges = kept;
        _count = maxRanges;
    }

    private int FindFirstEndingAtOrAfter(ulong sequence)
    {
        int low = 0, high = _count;
        while (low < high)
        {
            var middle = (low + high) / 2;
            if (_ranges[middle].Last < sequence)
            {
                low = middle + 1;
            }
            else
            {
                high = middle;
            }
        }

        return low;
    }
}
