using System.Diagnostics;

namespace Telemetry.Testing;

/// <summary>
/// A small disk of its own (a tmpfs of the given size, mounted on a new temporary folder) for a test to fill up.
/// Mounting needs root, as the CI's machine has.
/// </summary>
internal sealed class SmallDisk : IAsyncDisposable
{
    private SmallDisk(string path) => Path = path;

    public string Path { get; }

    /// <summary>Mounts a tmpfs of <paramref name="size"/> (as mount's <c>size=</c> option takes it: "256k", "48m").</summary>
    public static async Task<SmallDisk> MountAsync(string size)
    {
        var path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "telemetry-small-disk-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(path);
        await RunAsync("mount", "-t", "tmpfs", "-o", $"size={size}", "tmpfs", path);
        return new SmallDisk(path);
    }

    public async ValueTask DisposeAsync()
    {
        await RunAsync("umount", "-l", Path);
        Directory.Delete(Path, recursive: true);
    }

    private static async Task RunAsync(string command, params string[] arguments)
    {
        using var process = Process.Start(new ProcessStartInfo(command, arguments) { RedirectStandardError = true }) ?? throw new InvalidOperationException(command);
        var error = await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{command} {string.Join(' ', arguments)} exited with {process.ExitCode}: {error}");
        }
    }
}
