namespace Telemetry.Core.Rollups;

/// <summary>
/// The summary of one vital's readings in one window: enough for count, mean, min, max and standard deviation,
/// and the window's last reading. Windows of the same start merge exactly.
/// </summary>
[GenerateSerializer, Immutable]
public readonly record struct RollupWindow(
    long StartMs,
    long Count,
    double Sum,
    double Min,
    double Max,
    double SumOfSquares,
    double Last,
    long LastMs)
{
    public double Mean => Count == 0 ? double.NaN : Sum / Count;

    /// <summary>The population standard deviation of the window's readings.</summary>
    public double StandardDeviation => Count == 0 ? double.NaN : Math.Sqrt(Math.Max(0, (SumOfSquares / Count) - (Mean * Mean)));

    /// <summary>A window holding the single reading <paramref name="value"/> at <paramref name="timestampMs"/>.</summary>
    public static RollupWindow Of(long startMs, long timestampMs, double value) =>
        new(startMs, 1, value, value, value, value * value, value, timestampMs);

    /// <summary>This window with one more reading.</summary>
    public RollupWindow Add(long timestampMs, double value) => new(
        StartMs,
        Count + 1,
        Sum + value,
        Math.Min(Min, value),
        Math.Max(Max, value),
        SumOfSquares + (value * value),
        timestampMs >= LastMs ? value : Last,
        Math.Max(LastMs, timestampMs));

    /// <summary>This window merged with <paramref name="other"/>, re-based on this window's start.</summary>
    public RollupWindow Merge(in RollupWindow other)
    {
        if (other.Count == 0)
        {
            return this;
        }

        if (Count == 0)
        {
            return other with { StartMs = StartMs };
        }

        return new(
            StartMs,
            Count + other.Count,
            Sum + other.Sum,
            Math.Min(Min, other.Min),
            Math.Max(Max, other.Max),
            SumOfSquares + other.SumOfSquares,
            other.LastMs >= LastMs ? other.Last : Last,
            Math.Max(LastMs, other.LastMs));
    }
}
