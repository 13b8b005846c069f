using System.Globalization;
using Telemetry.Storage.DuckDb;
using Xunit;

namespace Telemetry.Storage.Tests.DuckDb;

public sealed class DuckDbMemoryLimitTests
{
    [Fact]
    public void The_cache_is_held_to_the_configured_limit_not_to_most_of_the_machine()
    {
        using var directory = new TemporaryDirectory();
        using var database = new DuckDbDatabase(Microsoft.Extensions.Options.Options.Create(new DuckDbOptions
        {
            Path = Path.Combine(directory.Path, "telemetry.duckdb"),
            MemoryLimit = "256MB",
        }));
        using var connection = database.OpenConnection();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT current_setting('memory_limit')";

        // DuckDB reports it in MiB: 256 MB is 244.1 MiB.
        var setting = (string)command.ExecuteScalar()!;
        Assert.EndsWith("MiB", setting, StringComparison.Ordinal);
        Assert.InRange(double.Parse(setting.Split(' ')[0], CultureInfo.InvariantCulture), 240, 260);
    }

    [Fact]
    public void A_limit_that_is_not_a_size_is_refused_before_it_reaches_duckdb()
    {
        using var directory = new TemporaryDirectory();
        var options = Microsoft.Extensions.Options.Options.Create(new DuckDbOptions
        {
            Path = Path.Combine(directory.Path, "telemetry.duckdb"),
            MemoryLimit = "1GB'; DROP TABLE readings; --",
        });

        var error = Assert.Throws<System.ComponentModel.DataAnnotations.ValidationException>(() => new DuckDbDatabase(options));
        Assert.Contains("MemoryLimit", error.Message, StringComparison.Ordinal);
    }
}
