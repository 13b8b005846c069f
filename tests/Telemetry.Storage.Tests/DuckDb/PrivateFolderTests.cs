using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Telemetry.Core.Storage;
using Telemetry.Storage.Audit;
using Telemetry.Storage.DuckDb;

namespace Telemetry.Storage.Tests.DuckDb;

/// <summary>
/// The folders the database and the audit log make are their owner's alone, whatever the process's umask; one made
/// before is left as it is, and the database warns when other users may read it.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class PrivateFolderTests : IDisposable
{
    private const UnixFileMode OpenToAll = PrivateFolder.Mode | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute;

    private readonly TemporaryDirectory _directory = new();

    public void Dispose() => _directory.Dispose();

    [Fact]
    public void The_database_makes_its_folders_for_their_owner_alone_and_says_nothing()
    {
        var warnings = new Warnings();

        using (new DuckDbDatabase(Beside(Path.Combine(_directory.Path, "data", "ward")), warnings))
        {
        }

        Assert.Equal(PrivateFolder.Mode, Permissions(Path.Combine(_directory.Path, "data")));
        Assert.Equal(PrivateFolder.Mode, Permissions(Path.Combine(_directory.Path, "data", "ward")));
        Assert.Empty(warnings.Said);
    }

    [Fact]
    public void A_folder_made_before_is_left_as_it_is_and_the_database_warns_when_others_may_read_it()
    {
        var shared = Made("shared", OpenToAll);
        var warnings = new Warnings();

        using (new DuckDbDatabase(Beside(shared), warnings))
        {
        }

        Assert.Equal(OpenToAll, Permissions(shared));
        Assert.Contains(warnings.Said, said => said.Contains(shared, StringComparison.Ordinal) && said.Contains("mode 755", StringComparison.Ordinal));
    }

    [Fact]
    public async Task The_audit_log_makes_its_folder_and_its_files_for_their_owner_alone()
    {
        var made = Path.Combine(_directory.Path, "audit-here");
        await using (var log = new AuditLog(Beside(made), TimeProvider.System, NullLogger<AuditLog>.Instance))
        {
            await log.WriteAsync("dr-a", "clinician", "p-1", "GET /api/patients/p-1/live", 200);
        }

        Assert.Equal(PrivateFolder.Mode, Permissions(made));

        // In a folder made before, open to all, each day's file is still its owner's alone.
        var shared = Made("shared-audit", OpenToAll);
        await using (var log = new AuditLog(Beside(shared), TimeProvider.System, NullLogger<AuditLog>.Instance))
        {
            await log.WriteAsync("dr-a", "clinician", "p-1", "GET /api/patients/p-1/live", 200);
        }

        Assert.Equal(OpenToAll, Permissions(shared));
        var file = Assert.Single(Directory.GetFiles(shared, "audit-*.log"));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, Permissions(file));
    }

    /// <summary>A file's or folder's permissions, without the set-id and sticky bits (a folder under a set-group-id one takes it).</summary>
    private static UnixFileMode Permissions(string path) =>
        File.GetUnixFileMode(path) & ~(UnixFileMode.SetUser | UnixFileMode.SetGroup | UnixFileMode.StickyBit);

    private static Microsoft.Extensions.Options.IOptions<DuckDbOptions> Beside(string folder) =>
        Microsoft.Extensions.Options.Options.Create(new DuckDbOptions { Path = Path.Combine(folder, "telemetry.duckdb") });

    /// <summary>A folder made as its operator would, with <paramref name="mode"/> whatever the umask.</summary>
    private string Made(string name, UnixFileMode mode)
    {
        var path = Directory.CreateDirectory(Path.Combine(_directory.Path, name)).FullName;
        File.SetUnixFileMode(path, mode);
        return path;
    }

    /// <summary>The warnings logged, as text.</summary>
    private sealed class Warnings : ILogger<DuckDbDatabase>
    {
        public List<string> Said { get; } = [];

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (logLevel >= LogLevel.Warning)
            {
                Said.Add(formatter(state, exception));
            }
        }
    }
}
