using System.Globalization;
using System.Reflection;
using System.Security.Cryptography;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Options;

namespace Telemetry.Api.Hosting;

/// <summary>
/// What an operator is told when the server cannot start for its settings or its surroundings (a value that cannot
/// work, a file that cannot be read, a port taken): one line per problem, naming the setting as it is configured
/// (<c>Telemetry:Ingest:MaxMessageBytes</c>, not the class that holds it), in place of an unhandled exception's stack.
/// </summary>
public static partial class StartupFailure
{
    /// <summary>
    /// The problems <paramref name="exception"/> tells of, or null when it is not one of settings or surroundings (a
    /// defect, whose stack is worth more than a line).
    /// </summary>
    /// <param name="server">The server's ports as configured, to name the setting of a port found taken (null: not named).</param>
    public static IReadOnlyList<string>? Describe(Exception exception, ServerOptions? server = null) => exception switch
    {
        AggregateException aggregate => aggregate.Flatten().InnerExceptions.Select(inner => Describe(inner, server)).ToList() is var all && all.All(problems => problems is not null)
            ? [.. all.SelectMany(problems => problems!).Distinct()]
            : null,
        OptionsValidationException invalid => [.. invalid.Failures.Select(failure => Setting(invalid.OptionsType, failure))],
        _ when server is not null && PortTaken(exception, server) is { } taken => [taken],
        InvalidOperationException or ArgumentException or FormatException or IOException or UnauthorizedAccessException or CryptographicException
            => [Messages(exception)],
        _ => null,
    };

    /// <summary>
    /// The server's settings as configured, for <see cref="Describe"/> to name a port taken; null when they cannot be
    /// read (then the failure is told without them).
    /// </summary>
    public static ServerOptions? ConfiguredServer(IConfiguration? configuration)
    {
        try
        {
            return configuration?.GetSection(ServerOptions.Section).Get<ServerOptions>() ?? new ServerOptions();
        }
        catch (InvalidOperationException)
        {
            return null;
        }
    }

    /// <summary>
    /// Writes the problems and returns the exit code that says the server did not start for them (2). One that does not
    /// name a setting or a file (an exception of a kind a defect can throw too) is followed by the exception itself.
    /// </summary>
    public static int Report(IReadOnlyList<string> problems, Exception exception, TextWriter error)
    {
        error.WriteLine("Telemetry did not start:");
        foreach (var problem in problems)
        {
            error.WriteLine($"  {problem}");
        }

        if (NamesWhatToChange(exception))
        {
            error.WriteLine("Change what is named (appsettings.json, or an environment variable such as Telemetry__Server__HttpPort) and start it again.");
        }
        else
        {
            error.WriteLine("Details:");
            error.WriteLine(exception);
        }

        return 2;
    }

    /// <summary>Whether the problems name the setting or the file to change: validation, a value that cannot be read as its type, a file, or a message naming a setting.</summary>
    private static bool NamesWhatToChange(Exception exception) => exception switch
    {
        AggregateException aggregate => aggregate.Flatten().InnerExceptions.All(NamesWhatToChange),
        OptionsValidationException or IOException or UnauthorizedAccessException or CryptographicException or AddressInUseException => true,
        _ => exception.Message.StartsWith("Failed to convert configuration value", StringComparison.Ordinal)
            || exception.Message.Contains("Telemetry:", StringComparison.Ordinal),
    };

    /// <summary>A validation failure, its options class's members named as settings under the class's section.</summary>
    private static string Setting(Type options, string failure)
    {
        var section = options.GetField("Section", BindingFlags.Public | BindingFlags.Static)?.GetValue(null) as string;
        if (DataAnnotationFailure().Match(failure) is { Success: true } match)
        {
            var members = match.Groups["members"].Value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
            var named = section is null ? members : members.Select(member => $"{section}:{member}");
            return $"{string.Join(", ", named)}: {match.Groups["error"].Value}";
        }

        return section is null || failure.Contains(section, StringComparison.Ordinal) ? failure : $"{section}: {failure}";
    }

    /// <summary>
    /// A listener's port found taken, named by its setting: Kestrel's failure names the address it could not bind;
    /// Orleans' names none, and its only listener is the silo's. Null when <paramref name="exception"/> is not one.
    /// </summary>
    private static string? PortTaken(Exception exception, ServerOptions server)
    {
        if (exception is IOException { InnerException: AddressInUseException } && BoundAddress().Match(exception.Message) is { Success: true } match
            && int.TryParse(match.Groups["port"].ValueSpan, NumberStyles.None, CultureInfo.InvariantCulture, out var port))
        {
            // Kestrel's listeners: the silo's is Orleans' (below).
            return server.Listeners(mqtt: true, tls: true).FirstOrDefault(listener => listener.Port == port && listener.Setting != nameof(ServerOptions.SiloPort)) is { Setting: not null } taken
                ? $"{ServerOptions.Section}:{taken.Setting}: port {port} ({taken.What}) is taken on {match.Groups["host"].Value} by another program; stop it, or give the server another port."
                : null;
        }

        return exception is AddressInUseException
            ? $"{ServerOptions.Section}:{nameof(ServerOptions.SiloPort)}: port {server.SiloPort} (the Orleans silo's, between the servers of a cluster) is taken by another program, " +
                "or by another Telemetry server on this machine; stop it, or give this server another silo port."
            : null;
    }

    /// <summary>An exception's message and those of the exceptions within it, as one line.</summary>
    private static string Messages(Exception exception)
    {
        var messages = new List<string>();
        for (var current = exception; current is not null; current = current.InnerException)
        {
            if (!messages.Any(message => message.Contains(current.Message, StringComparison.Ordinal)))
            {
                messages.Add(current.Message);
            }
        }

        return string.Join(" ", messages);
    }

    // Kestrel's "Failed to bind to address http://[::]:1883: address already in use."
    [GeneratedRegex(@"Failed to bind to address \w+://(?<host>\[[^\]]*\]|[^/:\s]+):(?<port>\d+)")]
    private static partial Regex BoundAddress();

    [GeneratedRegex(@"^DataAnnotation validation failed for '[^']*' members: '(?<members>[^']*)' with the error: '(?<error>.*)'\.?$", RegexOptions.Singleline)]
    private static partial Regex DataAnnotationFailure();
}
