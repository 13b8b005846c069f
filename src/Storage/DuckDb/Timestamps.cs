namespace Telemetry.Storage.DuckDb;

/// <summary>Unix milliseconds as the UTC <see cref="DateTime"/> DuckDB's TIMESTAMP columns take (reads come back through <c>epoch_ms</c>).</summary>
internal static class Timestamps
{
    private static readonly long MaxMs = new DateTimeOffset(9999, 12, 31, 0, 0, 0, TimeSpan.Zero).ToUnixTimeMilliseconds();
    private static readonly long MinMs = new DateTimeOffset(1, 1, 2, 0, 0, 0, TimeSpan.Zero).ToUnixTimeMilliseconds();

    public static DateTime ToDateTime(long unixMs) =>
        DateTime.UnixEpoch.AddMilliseconds(Math.Clamp(unixMs, MinMs, MaxMs));

    /// <summary>Unix milliseconds, clamped as <see cref="ToDateTime"/> does, as the microseconds a TIMESTAMP holds.</summary>
    public static long ToMicroseconds(long unixMs) => Math.Clamp(unixMs, MinMs, MaxMs) * 1000;
}
