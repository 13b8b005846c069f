using Microsoft.Extensions.Options;

namespace Telemetry.Api.Security;

/// <summary>
/// <c>dotnet run --project src/Api -- token --role clinician --sub dr-lee --care-team ward-3</c>: prints a development
/// token signed with this server's key (made beside the database if it is not there yet), for trying roles locally.
/// </summary>
public static class TokenCommand
{
    public const string Name = "token";

    private const string Usage = """
        usage: token --role admin|clinician|patient [--sub <who>] [--patient <id>]... [--care-team <id>]... [--scope "<scopes>"] [--hours <n>]
          --patient    for a patient: the patient they are
          --care-team  for a clinician: a care team they belong to (repeatable)
          --scope      SMART on FHIR scopes, space-separated (default: for an admin user/*.*, for a clinician
                       user/Observation.rs user/Observation.cu, for a patient patient/Observation.rs)
          --hours      lifetime (default 8)
        The server must read the same configuration (Telemetry:Storage:DuckDb:Path) to find the key: run the command
        from the folder the server runs in, or give the same settings as --Telemetry:Storage:DuckDb:Path=<file>.
        """;

    /// <summary>Whether a command-line argument is a setting for the server's configuration, not one of the command's.</summary>
    public static bool IsSetting(string argument) =>
        argument.StartsWith("--Telemetry", StringComparison.OrdinalIgnoreCase) && argument.Contains('=', StringComparison.Ordinal);

    public static int Run(WebApplication app, IReadOnlyList<string> args, TextWriter output, TextWriter error)
    {
        string? role = null, subject = null, scope = null;
        var patients = new List<string>();
        var teams = new List<string>();
        var hours = 8.0;
        for (var i = 0; i < args.Count; i++)
        {
            if (IsSetting(args[i]))
            {
                continue;
            }

            var value = i + 1 < args.Count ? args[i + 1] : null;
            var known = args[i] switch
            {
                "--role" => Set(ref role, value),
                "--sub" => Set(ref subject, value),
                "--scope" => Set(ref scope, value),
                "--patient" => Add(patients, value),
                "--care-team" => Add(teams, value),
                "--hours" => double.TryParse(value, System.Globalization.CultureInfo.InvariantCulture, out hours) && hours > 0,
                _ => false,
            };
            if (!known)
            {
                error.WriteLine($"token: '{args[i]}' is not understood.");
                error.WriteLine(Usage);
                return 2;
            }

            i++;
        }

        if (role is null || !TelemetryRoles.All.Contains(role) || (role == TelemetryRoles.Patient && patients.Count != 1))
        {
            error.WriteLine("token: --role must be admin, clinician or patient, and a patient needs exactly one --patient.");
            error.WriteLine(Usage);
            return 2;
        }

        if (!app.Services.GetRequiredService<IOptions<JwtOptions>>().Value.DevelopmentTokensAccepted)
        {
            error.WriteLine("token: note that this server is configured not to accept development tokens (Telemetry:Auth:Jwt).");
        }

        // What each role's own pages and tools need: a token that carries SMART scopes does what they grant and no more.
        scope ??= role switch
        {
            TelemetryRoles.Admin => "user/*.*",
            TelemetryRoles.Clinician => "user/Observation.rs user/Observation.cu",
            _ => "patient/Observation.rs",
        };
        var development = app.Services.GetRequiredService<DevelopmentTokens>();
        var token = development.Mint(subject ?? role, role, patients, teams, scope, TimeSpan.FromHours(hours), TimeProvider.System);
        if (development.KeyMadeNow)
        {
            // A server already running elsewhere (started from another folder, or with another data path) has a key of its
            // own and refuses this token with 401: say where this one is.
            error.WriteLine($"token: there was no development signing key at {development.KeyPath}, so one was made there. A server already running with another data folder refuses this token: run this command from the folder the server was started in, or give it the server's --Telemetry:Storage:DuckDb:Path=<file>.");
        }

        output.WriteLine(token);
        return 0;
    }

    private static bool Set(ref string? target, string? value)
    {
        target = value;
        return !string.IsNullOrWhiteSpace(value);
    }

    private static bool Add(List<string> target, string? value)
    {
        if (string.IsNullOrWhiteSpace(value))
        {
            return false;
        }

        target.Add(value);
        return true;
    }
}
