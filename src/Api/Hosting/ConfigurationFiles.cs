using Microsoft.Extensions.Configuration.Json;

namespace Telemetry.Api.Hosting;

/// <summary>Where the server's settings files are read from.</summary>
public static class ConfigurationFiles
{
    /// <summary>
    /// Adds the working directory's <c>appsettings.json</c>, when the content root is elsewhere: after the content root's
    /// files (so it wins over them) and before the environment and the command line (which win over it). A service
    /// started in a folder of its own keeps the settings it keeps there.
    /// </summary>
    public static void AddWorkingDirectorySettings(ConfigurationManager configuration, string contentRoot)
    {
        var workingDirectory = Path.GetFullPath(Directory.GetCurrentDirectory());
        if (string.Equals(Path.TrimEndingDirectorySeparator(workingDirectory), Path.TrimEndingDirectorySeparator(Path.GetFullPath(contentRoot)), StringComparison.Ordinal))
        {
            return;
        }

        var source = new JsonConfigurationSource { Path = Path.Combine(workingDirectory, "appsettings.json"), Optional = true, ReloadOnChange = false };
        source.ResolveFileProvider();
        var sources = configuration.Sources;
        var lastFile = -1;
        for (var i = 0; i < sources.Count; i++)
        {
            if (sources[i] is JsonConfigurationSource)
            {
                lastFile = i;
            }
        }

        sources.Insert(lastFile + 1, source);
    }
}
