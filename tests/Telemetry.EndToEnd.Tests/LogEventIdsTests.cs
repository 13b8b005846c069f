using System.Text.RegularExpressions;

namespace Telemetry.EndToEnd.Tests;

/// <summary>
/// An operator alerts on a log event's id (README names some): each id names one event. Read from the sources, as no
/// test project loads every assembly of the server.
/// </summary>
public sealed partial class LogEventIdsTests
{
    [Fact]
    public void Every_logged_event_has_an_id_of_its_own()
    {
        var source = Path.Combine(TelemetryServer.RepositoryRoot(), "src");
        var events = Directory.EnumerateFiles(source, "*.cs", SearchOption.AllDirectories)
            .Where(file => !file.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal))
            .SelectMany(file => LoggerMessage().Matches(File.ReadAllText(file)).Select(match => (File: Path.GetRelativePath(source, file), Attribute: match.Value)))
            .ToList();

        Assert.True(events.Count > 50, $"only {events.Count} log events found under {source}");
        Assert.All(events, e => Assert.Matches(EventId(), e.Attribute));
        var shared = events
            .GroupBy(e => EventId().Match(e.Attribute).Groups["id"].Value)
            .Where(group => group.Count() > 1)
            .Select(group => $"{group.Key}: {string.Join(", ", group.Select(e => e.File))}")
            .ToList();
        Assert.True(shared.Count == 0, "log event ids used more than once: " + string.Join("; ", shared));
    }

    [GeneratedRegex(@"\[LoggerMessage\([^\]]*\)\]")]
    private static partial Regex LoggerMessage();

    [GeneratedRegex(@"EventId = (?<id>\d+)")]
    private static partial Regex EventId();
}
