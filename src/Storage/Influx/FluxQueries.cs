using System.Globalization;
using System.Text;
using Telemetry.Core.Rollups;
using Telemetry.Core.Vitals;

namespace Telemetry.Storage.Influx;

/// <summary>
/// The Flux the InfluxDB raw store sends. Every value that comes from a caller is quoted as a Flux string literal, and
/// times are RFC 3339 literals clamped to what Flux can represent.
/// </summary>
internal static class FluxQueries
{
    /// <summary>Flux times stop at 2262; queries open to the future stop here instead.</summary>
    public static readonly long LatestMs = new DateTimeOffset(2200, 1, 1, 0, 0, 0, TimeSpan.Zero).ToUnixTimeMilliseconds();

    /// <summary>
    /// Per vital and window of <paramref name="resolution"/>: count, sum, min, max, sum of squares and the last reading
    /// (result <c>windows</c>), and the highest commit id among the readings (result <c>commit</c>).
    /// </summary>
    public static string Aggregate(string bucket, string patientId, long fromMs, long toMs, Resolution resolution) => $$"""
        data = {{Patient(bucket, InfluxLayout.Vitals, patientId, fromMs, toMs)}}
        data
          |> filter(fn: (r) => r._field == "{{InfluxLayout.ValueField}}")
          |> group(columns: ["{{InfluxLayout.KindTag}}"])
          |> window(every: {{Duration(resolution)}})
          |> reduce(
              identity: {count: 0, sum: 0.0, min: 0.0, max: 0.0, squares: 0.0, last: 0.0, lastTime: 0},
              fn: (r, accumulator) => ({
                  count: accumulator.count + 1,
                  sum: accumulator.sum + r._value,
                  min: if accumulator.count == 0 or r._value < accumulator.min then r._value else accumulator.min,
                  max: if accumulator.count == 0 or r._value > accumulator.max then r._value else accumulator.max,
                  squares: accumulator.squares + r._value * r._value,
                  last: if int(v: r._time) >= accumulator.lastTime then r._value else accumulator.last,
                  lastTime: if int(v: r._time) >= accumulator.lastTime then int(v: r._time) else accumulator.lastTime
              }))
          |> yield(name: "windows")
        data
          |> filter(fn: (r) => r._field == "{{InfluxLayout.CommitField}}")
          |> group()
          |> max()
          |> yield(name: "commit")
        """;

    /// <summary>The vital and time of each of the device's readings, or its quarantined ones, under any patient (to recognise one sent again).</summary>
    public static string Existing(string bucket, string measurement, string deviceId, IReadOnlyCollection<VitalKind> kinds, long fromMs, long toMs) => $"""
        from(bucket: {Quote(bucket)})
          |> range(start: {Time(fromMs)}, stop: {Time(toMs)})
          |> filter(fn: (r) => r._measurement == "{measurement}" and r.{InfluxLayout.DeviceTag} == {Quote(deviceId)})
          |> filter(fn: (r) => r._field == "{InfluxLayout.ValueField}")
          |> filter(fn: (r) => contains(value: r.{InfluxLayout.KindTag}, set: {KindSet(kinds)}))
          |> keep(columns: ["_time", "{InfluxLayout.KindTag}", "{InfluxLayout.DeviceTag}", "_value"])
        """;

    /// <summary>The patient's readings of one vital, oldest first, at most <paramref name="limit"/>.</summary>
    public static string Read(string bucket, string patientId, VitalKind kind, long fromMs, long toMs, int limit) => $"""
        {Patient(bucket, InfluxLayout.Vitals, patientId, fromMs, toMs)}
          |> filter(fn: (r) => r._field == "{InfluxLayout.ValueField}" and r.{InfluxLayout.KindTag} == {Quote(VitalCatalogue.Get(kind).Name)})
          |> group()
          |> sort(columns: ["_time"])
          |> limit(n: {limit.ToString(CultureInfo.InvariantCulture)})
        """;

    /// <summary>The newest <paramref name="perKind"/> readings of each vital, newest first within each.</summary>
    public static string ReadLatest(string bucket, string patientId, IEnumerable<VitalKind> kinds, long fromMs, long toMs, int perKind) => $"""
        {Patient(bucket, InfluxLayout.Vitals, patientId, fromMs, toMs)}
          |> filter(fn: (r) => r._field == "{InfluxLayout.ValueField}" and contains(value: r.{InfluxLayout.KindTag}, set: {KindSet(kinds)}))
          |> group(columns: ["{InfluxLayout.KindTag}"])
          |> sort(columns: ["_time"], desc: true)
          |> limit(n: {perKind.ToString(CultureInfo.InvariantCulture)})
        """;

    /// <summary>The patient's readings of <paramref name="kinds"/> in time order (for exports).</summary>
    public static string Stream(string bucket, string patientId, IEnumerable<VitalKind> kinds, long fromMs, long toMs) => $"""
        {Patient(bucket, InfluxLayout.Vitals, patientId, fromMs, toMs)}
          |> filter(fn: (r) => r._field == "{InfluxLayout.ValueField}" and contains(value: r.{InfluxLayout.KindTag}, set: {KindSet(kinds)}))
          |> group()
          |> sort(columns: ["_time"])
        """;

    /// <summary>The device's newest quarantined readings in [<paramref name="fromMs"/>, <paramref name="toMs"/>) with their reasons, newest first.</summary>
    public static string Quarantine(string bucket, string deviceId, long fromMs, long toMs, int limit) => $"""
        from(bucket: {Quote(bucket)})
          |> range(start: {Time(fromMs)}, stop: {Time(toMs)})
          |> filter(fn: (r) => r._measurement == "{InfluxLayout.Quarantine}" and r.{InfluxLayout.DeviceTag} == {Quote(deviceId)})
          |> filter(fn: (r) => r._field == "{InfluxLayout.ValueField}" or r._field == "{InfluxLayout.ReasonField}")
          |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
          |> group()
          |> sort(columns: ["_time"], desc: true)
          |> limit(n: {limit.ToString(CultureInfo.InvariantCulture)})
        """;

    /// <summary>The patient's rollups of one vital at one resolution, one row per window with its fields, oldest first.</summary>
    public static string Rollups(string bucket, string patientId, VitalKind kind, Resolution resolution, long fromMs, long toMs) => $"""
        {Patient(bucket, InfluxLayout.Rollups, patientId, fromMs, toMs)}
          |> filter(fn: (r) => r.{InfluxLayout.KindTag} == {Quote(VitalCatalogue.Get(kind).Name)} and r.{InfluxLayout.ResolutionTag} == "{resolution.ToWireName()}")
          |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
          |> group()
          |> sort(columns: ["_time"])
        """;

    /// <summary>A Flux string literal: quotes, backslashes and interpolation escaped.</summary>
    public static string Quote(string value)
    {
        var quoted = new StringBuilder(value.Length + 2).Append('"');
        foreach (var c in value)
        {
            _ = c switch
            {
                '"' => quoted.Append("\\\""),
                '\\' => quoted.Append("\\\\"),
                '$' => quoted.Append("\\$"),
                '\n' => quoted.Append("\\n"),
                '\r' => quoted.Append("\\r"),
                '\t' => quoted.Append("\\t"),
                _ => quoted.Append(c),
            };
        }

        return quoted.Append('"').ToString();
    }

    /// <summary>An RFC 3339 time literal for <paramref name="ms"/>, clamped to [1970, 2200).</summary>
    public static string Time(long ms) =>
        DateTimeOffset.FromUnixTimeMilliseconds(Math.Clamp(ms, 0, LatestMs)).UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);

    private static string Patient(string bucket, string measurement, string patientId, long fromMs, long toMs) => $"""
        from(bucket: {Quote(bucket)})
          |> range(start: {Time(fromMs)}, stop: {Time(toMs)})
          |> filter(fn: (r) => r._measurement == "{measurement}" and r.{InfluxLayout.PatientTag} == {Quote(patientId)})
        """;

    private static string KindSet(IEnumerable<VitalKind> kinds) =>
        "[" + string.Join(", ", kinds.Select(kind => Quote(VitalCatalogue.Get(kind).Name))) + "]";

    private static string Duration(Resolution resolution) => resolution switch
    {
        Resolution.Minute => "1m",
        Resolution.Hour => "1h",
        Resolution.Day => "1d",
        _ => throw new ArgumentOutOfRangeException(nameof(resolution), resolution, "no Flux duration for this resolution"),
    };
}
