using System.Runtime.InteropServices;

namespace Telemetry.Storage;

/// <summary>What files' own flushes do not cover: a folder's entries (a file created or renamed in it).</summary>
internal static partial class Folders
{
    /// <summary>
    /// Flushes a folder's entries to the disk (<c>fsync</c> on the folder), so that a file created or renamed in it is
    /// found there after a power cut. Returns false when that failed; true when it is done, or where the platform or the
    /// file system has no such call (<c>EINVAL</c>, <c>EBADF</c> from <c>fsync</c> on a folder, as on some network and
    /// FUSE mounts, which would refuse it every time).
    /// </summary>
    public static bool Sync(string folder)
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS())
        {
            return true;
        }

        var descriptor = Open(folder, 0);
        if (descriptor < 0)
        {
            return false;
        }

        try
        {
            return Fsync(descriptor) == 0 || Marshal.GetLastPInvokeError() is NotSupportedHere or BadDescriptor;
        }
        finally
        {
            _ = Close(descriptor);
        }
    }

    // errno values, the same on Linux and macOS.
    private const int BadDescriptor = 9, NotSupportedHere = 22;

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int descriptor);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int descriptor);
}
