using System.Globalization;

namespace Telemetry.Benchmarks;

/// <summary>The options of the hand-run benchmarks (<c>-- load</c>, <c>-- memory</c>, <c>-- trends</c>): <c>--name value</c> pairs.</summary>
internal static class CommandLine
{
    public static int Option(string[] args, string name, int fallback) =>
        OptionText(args, name) is { } text ? int.Parse(text, CultureInfo.InvariantCulture) : fallback;

    public static string? OptionText(string[] args, string name)
    {
        var at = Array.IndexOf(args, name);
        return at >= 0 && at + 1 < args.Length ? args[at + 1] : null;
    }
}
