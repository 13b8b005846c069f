using Telemetry.Storage.Influx;

namespace Telemetry.Storage.Tests.Influx;

/// <summary>An API token given in a file is read from it, and a file that cannot give one stops the start naming the setting.</summary>
public sealed class InfluxOptionsTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("influx-token-").FullName;

    [Fact]
    public void A_token_file_is_read_trimmed()
    {
        var path = Path.Combine(_folder, "token");
        File.WriteAllText(path, "s3cret-token\n");

        Assert.Equal("s3cret-token", new InfluxOptions { TokenFile = path }.ResolveToken());
    }

    [Fact]
    public void A_token_file_that_is_missing_or_empty_is_refused_naming_the_setting()
    {
        var missing = Path.Combine(_folder, "no-such-token");
        var empty = Path.Combine(_folder, "empty-token");
        File.WriteAllText(empty, "  \n");

        var notRead = Assert.Throws<InvalidOperationException>(() => new InfluxOptions { TokenFile = missing }.ResolveToken());
        var nothing = Assert.Throws<InvalidOperationException>(() => new InfluxOptions { TokenFile = empty }.ResolveToken());

        Assert.StartsWith("Telemetry:Storage:InfluxDb:TokenFile: ", notRead.Message, StringComparison.Ordinal);
        Assert.Contains("could not be read", notRead.Message, StringComparison.Ordinal);
        Assert.StartsWith("Telemetry:Storage:InfluxDb:TokenFile: ", nothing.Message, StringComparison.Ordinal);
        Assert.Contains("is empty", nothing.Message, StringComparison.Ordinal);
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);
}
