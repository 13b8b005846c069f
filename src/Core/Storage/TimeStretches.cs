namespace Telemetry.Core.Storage;

/// <summary>
/// Times to read around, as a few stretches: split at the widest gaps between them that are at least a given length.
/// Each stretch is one read, so times far apart (a reading from a month ago and one from a minute ago) cost two small
/// reads rather than one of everything between them.
/// </summary>
public static class TimeStretches
{
    /// <summary>
    /// <paramref name="sortedTimes"/> (ascending, at least one) as at most <paramref name="maxStretches"/> stretches,
    /// each from its first time to its last, split at the widest gaps of <paramref name="minGapMs"/> or more.
    /// </summary>
    public static List<(long FirstMs, long LastMs)> Of(IReadOnlyList<long> sortedTimes, long minGapMs, int maxStretches)
    {
        var splits = Enumerable.Range(1, sortedTimes.Count - 1)
            .Where(k => sortedTimes[k] - sortedTimes[k - 1] >= minGapMs)
            .OrderByDescending(k => sortedTimes[k] - sortedTimes[k - 1])
            .Take(maxStretches - 1)
            .Order();
        var stretches = new List<(long FirstMs, long LastMs)>();
        var start = 0;
        foreach (var split in splits.Append(sortedTimes.Count))
        {
            stretches.Add((sortedTimes[start], sortedTimes[split - 1]));
            start = split;
        }

        return stretches;
    }

    /// <summary>
    /// [<paramref name="fromMs"/>, <paramref name="toMs"/>) from its end back, in stretches a day long, then eight times
    /// as long each (a day, eight, 64, ...): a read of the newest few reads about what it needs when the recent past
    /// holds them, and reaches the start of a long range in a few stretches when it does not.
    /// </summary>
    public static IEnumerable<(long FromMs, long ToMs)> Back(long fromMs, long toMs)
    {
        const long Day = 86_400_000;
        var step = Day;
        for (var end = toMs; end > fromMs;)
        {
            var start = end - fromMs <= step ? fromMs : end - step;
            yield return (start, end);
            end = start;
            step = step > long.MaxValue / 8 ? long.MaxValue : step * 8;
        }
    }
}
