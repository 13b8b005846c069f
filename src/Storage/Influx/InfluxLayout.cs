using System.Globalization;
using System.Text;
using Telemetry.Core.Readings;
using Telemetry.Core.Rollups;
using Telemetry.Core.Vitals;

namespace Telemetry.Storage.Influx;

/// <summary>
/// How readings are laid out in InfluxDB: measurement <c>vitals</c> (and <c>quarantine</c> for readings refused as
/// implausible), tags <c>device</c>, <c>kind</c> (the catalogue's name) and <c>patient</c>, fields <c>value</c> (the
/// canonical unit) and <c>commit</c> (the commit that stored it), time in milliseconds. A reading's identity is its
/// series and time, so writing it again overwrites it with itself: a resend is stored once.
/// </summary>
internal static class InfluxLayout
{
    public const string Vitals = "vitals";
    public const string Quarantine = "quarantine";
    public const string Rollups = "rollups";
    public const string ResolutionTag = "resolution";
    public const string ValueField = "value";
    public const string CommitField = "commit";
    public const string ReasonField = "reason";
    public const string DeviceTag = "device";
    public const string KindTag = "kind";
    public const string PatientTag = "patient";

    /// <summary>Appends one line of line protocol; tags in key order, as InfluxDB sorts them.</summary>
    public static void AppendLine(StringBuilder lines, string measurement, string deviceId, string patientId, in VitalReading reading, long commitId, string? reason = null)
    {
        // Ids are letters, digits and - _ : . only, and kind names are the catalogue's: nothing to escape.
        lines.Append(measurement)
            .Append(",device=").Append(deviceId)
            .Append(",kind=").Append(VitalCatalogue.Get(reading.Kind).Name)
            .Append(",patient=").Append(patientId)
            .Append(" value=").Append(reading.Value.ToString("R", CultureInfo.InvariantCulture))
            .Append(",commit=").Append(commitId.ToString(CultureInfo.InvariantCulture)).Append('i');
        if (reason is not null)
        {
            lines.Append(",reason=\"").Append(reason).Append('"');
        }

        lines.Append(' ').Append(reading.TimestampMs.ToString(CultureInfo.InvariantCulture)).Append('\n');
    }

    /// <summary>
    /// Appends a rollup as one point of <c>rollups</c>, tagged with kind, patient and resolution. At its window's start
    /// (<paramref name="writtenAtMs"/> null), so writing a window again replaces it, as InfluxDB replaces a point; or, for
    /// a server that does not reliably replace a point written twice (VictoriaMetrics), at a time of writing unique to
    /// the series, with the window's start as field <c>start</c>, so a reader keeps the latest write of each window.
    /// </summary>
    public static void AppendRollup(StringBuilder lines, Rollup rollup, long? writtenAtMs = null)
    {
        var window = rollup.Window;
        var invariant = CultureInfo.InvariantCulture;
        lines.Append(Rollups)
            .Append(",kind=").Append(VitalCatalogue.Get(rollup.Kind).Name)
            .Append(",patient=").Append(rollup.PatientId)
            .Append(",resolution=").Append(rollup.Resolution.ToWireName())
            .Append(" count=").Append(window.Count.ToString(invariant)).Append('i')
            .Append(",sum=").Append(window.Sum.ToString("R", invariant))
            .Append(",min=").Append(window.Min.ToString("R", invariant))
            .Append(",max=").Append(window.Max.ToString("R", invariant))
            .Append(",squares=").Append(window.SumOfSquares.ToString("R", invariant))
            .Append(",last=").Append(window.Last.ToString("R", invariant))
            .Append(",lastTime=").Append(window.LastMs.ToString(invariant)).Append('i');
        if (writtenAtMs is { } written)
        {
            lines.Append(",start=").Append(window.StartMs.ToString(invariant)).Append('i');
        }

        lines.Append(' ').Append((writtenAtMs ?? window.StartMs).ToString(invariant)).Append('\n');
    }

    /// <summary>The vital a <c>kind</c> tag names, if it is one of the catalogue's.</summary>
    public static bool TryParseKind(object? tag, out VitalKind kind)
    {
        if (tag is string name && VitalCatalogue.TryFind(name, out var definition))
        {
            kind = definition.Kind;
            return true;
        }

        kind = default;
        return false;
    }
}
