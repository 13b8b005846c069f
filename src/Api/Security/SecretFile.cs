using System.Text;

namespace Telemetry.Api.Security;

/// <summary>A secret kept in a file beside the database, readable by its owner only, made at first start.</summary>
public static class SecretFile
{
    /// <summary>The secret in <paramref name="path"/>, written there from <paramref name="create"/> when the file does not exist.</summary>
    public static string LoadOrCreate(string path, Func<string> create)
    {
        if (File.Exists(path))
        {
            return File.ReadAllText(path).Trim();
        }

        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var secret = create();
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        using (var writer = new StreamWriter(path, new UTF8Encoding(encoderShouldEmitUTF8Identifier: false), options))
        {
            writer.Write(secret);
        }

        return secret;
    }
}
