using System.Globalization;

namespace Telemetry.Benchmarks.Load;

/// <summary>Reads figures out of the server's <c>/metrics</c> (Prometheus' text format), for the benchmarks.</summary>
internal static class PrometheusText
{
    /// <summary>The value of one series' line (its last field).</summary>
    public static double Value(string line) => double.Parse(line[(line.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture);

    /// <summary>The sum of a metric's series (those whose labels hold the value <paramref name="label"/>, if given).</summary>
    public static double Sum(string metrics, string name, string? label = null)
    {
        var sum = 0.0;
        foreach (var line in metrics.Split('\n'))
        {
            if (line.StartsWith(name, StringComparison.Ordinal) && line.Length > name.Length && line[name.Length] is '{' or ' '
                && (label is null || line.Contains($"\"{label}\"", StringComparison.Ordinal)))
            {
                sum += Value(line);
            }
        }

        return sum;
    }
}
