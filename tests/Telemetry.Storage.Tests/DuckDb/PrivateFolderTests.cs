using Microsoft.Extensions.Logging.Abstractions;
using Telemetry.Core.Storage;
using Telemetry.Storage.Audit;
using Telemetry.Storage.DuckDb;

namespace Telemetry.Storage.Tests.DuckDb;

/// <summary>The folders the database and the audit log make are their owner's alone, whatever the process's umask.</summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class PrivateFolderTests : IDisposable
{
    private readonly TemporaryDirectory _directory = new();

    public void Dispose() => _directory.Dispose();

    [Fact]
    public void The_database_makes_its_folders_for_their_owner_alone()
    {
        var options = Microsoft.Extensions.Options.Options.Create(new DuckDbOptions { Path = Path.Combine(_directory.Path, "data", "ward", "telemetry.duckdb") });

        using (new DuckDbDatabase(options))
        {
        }

        Assert.Equal(PrivateFolder.Mode, File.GetUnixFileMode(Path.Combine(_directory.Path, "data")));
        Assert.Equal(PrivateFolder.Mode, File.GetUnixFileMode(Path.Combine(_directory.Path, "data", "ward")));
    }

    [Fact]
    public async Task The_audit_log_makes_its_folder_for_its_owner_alone_and_leaves_one_made_by_the_operator_as_it_is()
    {
        var options = Microsoft.Extensions.Options.Options.Create(new DuckDbOptions { Path = Path.Combine(_directory.Path, "audit-here", "telemetry.duckdb") });
        await using (new AuditLog(options, TimeProvider.System, NullLogger<AuditLog>.Instance))
        {
        }

        Assert.Equal(PrivateFolder.Mode, File.GetUnixFileMode(Path.Combine(_directory.Path, "audit-here")));

        // The temporary folder was made before, as the operator's own would be: its mode stays.
        var shared = Directory.CreateDirectory(Path.Combine(_directory.Path, "shared"), PrivateFolder.Mode | UnixFileMode.GroupRead | UnixFileMode.GroupExecute);
        var beside = Microsoft.Extensions.Options.Options.Create(new DuckDbOptions { Path = Path.Combine(shared.FullName, "telemetry.duckdb") });
        await using (new AuditLog(beside, TimeProvider.System, NullLogger<AuditLog>.Instance))
        {
        }

        Assert.Equal(PrivateFolder.Mode | UnixFileMode.GroupRead | UnixFileMode.GroupExecute, File.GetUnixFileMode(shared.FullName));
    }
}
