using System.Text;

namespace Telemetry.Api.Security;

/// <summary>A secret kept in a file beside the database, readable by its owner only, made at first start.</summary>
public static class SecretFile
{
    /// <summary>
    /// The secret in <paramref name="path"/>, written there from <paramref name="create"/> when the file does not exist
    /// (or is empty: a crash while it was first written). It is written whole to a file of its own, flushed to the
    /// disk, then moved into place, so the file is never seen part written; of two processes making it at once (the
    /// server and its <c>token</c> command), the second reads the first's.
    /// </summary>
    public static string LoadOrCreate(string path, Func<string> create)
    {
        if (Read(path) is { } existing)
        {
            return existing;
        }

        Core.Storage.PrivateFolder.Create(Path.GetDirectoryName(path)!);
        var secret = create();
        var written = $"{path}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp";
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        try
        {
            using (var file = new FileStream(written, options))
            {
                file.Write(new UTF8Encoding(encoderShouldEmitUTF8Identifier: false).GetBytes(secret));
                file.Flush(flushToDisk: true);
            }

            try
            {
                File.Move(written, path, overwrite: false);
                return secret;
            }
            catch (IOException) when (File.Exists(path))
            {
                // One another process put in place meanwhile is taken instead; only an empty one (a crash's) is replaced.
                if (Read(path) is { } raced)
                {
                    return raced;
                }

                File.Move(written, path, overwrite: true);
                return secret;
            }
        }
        finally
        {
            File.Delete(written);
        }
    }

    private static string? Read(string path)
    {
        try
        {
            return File.ReadAllText(path).Trim() is { Length: > 0 } secret ? secret : null;
        }
        catch (Exception exception) when (exception is FileNotFoundException or DirectoryNotFoundException)
        {
            // Not made yet; nor, before the server's first start, its folder.
            return null;
        }
    }
}
