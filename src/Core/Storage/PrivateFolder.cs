namespace Telemetry.Core.Storage;

/// <summary>
/// The folders the server keeps patients' data and its secrets in: made readable by their owner only where the platform
/// has file modes (<c>rwx------</c>), whatever the process's umask, so that the files in them (DuckDB's, the audit
/// log's, which DuckDB and others create with the umask's modes) are out of other local users' reach. A folder that
/// already exists is left as its operator made it.
/// </summary>
public static class PrivateFolder
{
    public const UnixFileMode Mode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    /// <summary>Makes <paramref name="path"/> and any folder above it that is missing, each with <see cref="Mode"/>.</summary>
    public static DirectoryInfo Create(string path)
    {
        if (OperatingSystem.IsWindows())
        {
            return Directory.CreateDirectory(path);
        }

        // Directory.CreateDirectory gives the mode to the last folder alone, those above it the umask's.
        var full = Path.GetFullPath(path);
        if (Path.GetDirectoryName(full) is { } parent && !Directory.Exists(parent))
        {
            Create(parent);
        }

        return Directory.CreateDirectory(full, Mode);
    }
}
