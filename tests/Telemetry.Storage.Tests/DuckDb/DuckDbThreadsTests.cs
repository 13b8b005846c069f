using System.Globalization;
using DuckDB.NET.Data;
using Telemetry.Storage.DuckDb;
using Xunit;

namespace Telemetry.Storage.Tests.DuckDb;

public sealed class DuckDbThreadsTests
{
    [Fact]
    public void DuckDB_keeps_its_own_choice_unless_told_otherwise()
    {
        Assert.Equal(DuckDbOwnChoice(), ThreadsOf(new DuckDbOptions()));
    }

    [Fact]
    public void One_thread_can_be_asked_for()
    {
        Assert.Equal(1, ThreadsOf(new DuckDbOptions { Threads = 1 }));
    }

    [Fact]
    public void A_configured_count_is_the_one_duckdb_uses()
    {
        // One more than DuckDB would choose by itself, so the count can only come from the option.
        var count = DuckDbOwnChoice() + 1;

        Assert.Equal(count, ThreadsOf(new DuckDbOptions { Threads = count }));
    }

    [Fact]
    public void A_negative_count_is_refused_before_it_reaches_duckdb()
    {
        using var directory = new TemporaryDirectory();
        var options = Microsoft.Extensions.Options.Options.Create(new DuckDbOptions { Path = Path.Combine(directory.Path, "telemetry.duckdb"), Threads = -1 });

        var error = Assert.Throws<System.ComponentModel.DataAnnotations.ValidationException>(() => new DuckDbDatabase(options));
        Assert.Contains("Threads", error.Message, StringComparison.Ordinal);
    }

    private static int ThreadsOf(DuckDbOptions options)
    {
        using var directory = new TemporaryDirectory();
        options.Path = Path.Combine(directory.Path, "telemetry.duckdb");
        using var database = new DuckDbDatabase(Microsoft.Extensions.Options.Options.Create(options));
        using var connection = database.OpenConnection();
        return Threads(connection);
    }

    private static int DuckDbOwnChoice()
    {
        using var fresh = new DuckDBConnection("Data Source=:memory:");
        fresh.Open();
        return Threads(fresh);
    }

    private static int Threads(DuckDBConnection connection)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT current_setting('threads')";
        return Convert.ToInt32(command.ExecuteScalar(), CultureInfo.InvariantCulture);
    }
}
