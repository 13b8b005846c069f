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

    // Exactly as long as there are ranges (one, for most devices): the ledger keeps this for every device it has seen,
    // and the array changes size only when a gap opens or closes.
    private (ulong First, ulong Last)[] _ranges = [];

    public IReadOnlyList<(ulong First, ulong Last)> Ranges => _ranges;

    public bool Contains(ulong sequence)
    {
        var index = FindFirstEndingAtOrAfter(sequence);
        return index < _ranges.Length && _ranges[index].First <= sequence;
    }

    public void Add(ulong sequence) => Add(sequence, sequence);

    public void Add(ulong first, ulong last)
    {
        // Merge with every range that overlaps or touches [first, last].
        var index = FindFirstEndingAtOrAfter(first == 0 ? 0 : first - 1);
        var end = index;
        while (end < _ranges.Length && (last == ulong.MaxValue || _ranges[end].First <= last + 1))
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

        // The merged range replaces ranges index..end-1 (none when it touches none); past the most kept, the oldest goes.
        var dropped = _ranges.Length - (end - index) + 1 > MaxRanges ? 1 : 0;
        var ranges = new (ulong First, ulong Last)[_ranges.Length - (end - index) + 1 - dropped];
        var written = 0;
        for (var i = dropped; i < index; i++)
        {
            ranges[written++] = _ranges[i];
        }

        if (index >= dropped)
        {
            ranges[written++] = (first, last);
        }

        for (var i = end; i < _ranges.Length; i++)
        {
            ranges[written++] = _ranges[i];
        }

        _ranges = ranges;
    }

    private int FindFirstEndingAtOrAfter(ulong sequence)
    {
        int low = 0, high = _ranges.Length;
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
