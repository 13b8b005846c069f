using Telemetry.Storage.DuckDb;

namespace Telemetry.Storage.Tests.DuckDb;

/// <summary>Statements a test runs on the file beside the store, over a connection of its own.</summary>
internal static class Sql
{
    public static void Execute(DuckDbDatabase database, string sql)
    {
        using var connection = database.OpenConnection();
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    public static long Scalar(DuckDbDatabase database, string sql)
    {
        using var connection = database.OpenConnection();
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return Convert.ToInt64(command.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture);
    }
}
