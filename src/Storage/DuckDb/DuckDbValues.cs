using System.Text;
using DuckDB.NET.Data;

namespace Telemetry.Storage.DuckDb;

/// <summary>
/// Multi-row statements: one statement for a group of rows instead of one each. DuckDB spends about a millisecond on
/// every statement, however few rows it touches, so a group written row by row costs far more than the same group at
/// once. A group of one row goes by its key instead (<see cref="ExecuteRow"/>): a join with a one-row list costs more.
/// </summary>
internal static class DuckDbValues
{
    // Rows per statement, so a burst does not make one statement with tens of thousands of parameters.
    private const int RowsPerStatement = 500;

    /// <summary>
    /// Commands for <paramref name="sql"/>, one per slice of <paramref name="rows"/>, with <c>{values}</c> replaced by
    /// <c>($1, $2), ($3, $4), …</c> and the parameters bound from <paramref name="columns"/> (a null binds SQL NULL).
    /// The caller runs and disposes each.
    /// </summary>
    private static IEnumerable<DuckDBCommand> Commands<T>(DuckDBConnection connection, string sql, IReadOnlyList<T> rows, Func<T, object?[]> columns)
    {
        for (var start = 0; start < rows.Count; start += RowsPerStatement)
        {
            var count = Math.Min(RowsPerStatement, rows.Count - start);
            var command = connection.CreateCommand();
            var values = new StringBuilder();
            var parameter = 0;
            for (var row = 0; row < count; row++)
            {
                values.Append(row == 0 ? "(" : ", (");
                var fields = columns(rows[start + row]);
                for (var column = 0; column < fields.Length; column++)
                {
                    values.Append(column == 0 ? "$" : ", $").Append(++parameter);
                    command.Parameters.Add(new DuckDBParameter(fields[column] ?? DBNull.Value));
                }

                values.Append(')');
            }

            command.CommandText = sql.Replace("{values}", values.ToString(), StringComparison.Ordinal);
            yield return command;
        }
    }

    /// <summary>Runs <paramref name="sql"/> over <paramref name="rows"/> as <see cref="Commands"/> makes it; returns the rows changed.</summary>
    public static int Execute<T>(DuckDBConnection connection, string sql, IReadOnlyList<T> rows, Func<T, object?[]> columns)
    {
        var changed = 0;
        foreach (var command in Commands(connection, sql, rows, columns))
        {
            using (command)
            {
                changed += command.ExecuteNonQuery();
            }
        }

        return changed;
    }

    /// <summary>
    /// Runs <paramref name="sql"/> for one row, its parameters <c>$1</c>, <c>$2</c>, … bound from <paramref name="values"/>;
    /// returns the rows changed. A statement by key costs DuckDB far less than a join with a one-row VALUES list.
    /// </summary>
    public static int ExecuteRow(DuckDBConnection connection, string sql, params object?[] values)
    {
        using var command = Command(connection, sql, values);
        return command.ExecuteNonQuery();
    }

    /// <summary>Runs the query <paramref name="sql"/> for one row as <see cref="ExecuteRow"/> does, handing each result row to <paramref name="read"/>.</summary>
    public static void ReadRow(DuckDBConnection connection, string sql, object?[] values, Action<DuckDBDataReader> read)
    {
        using var command = Command(connection, sql, values);
        using var reader = command.ExecuteReader();
        while (reader.Read())
        {
            read(reader);
        }
    }

    private static DuckDBCommand Command(DuckDBConnection connection, string sql, object?[] values)
    {
        var command = connection.CreateCommand();
        command.CommandText = sql;
        foreach (var value in values)
        {
            command.Parameters.Add(new DuckDBParameter(value ?? DBNull.Value));
        }

        return command;
    }

    /// <summary>Runs the query <paramref name="sql"/> over <paramref name="rows"/> as <see cref="Commands"/> makes it, handing each result row to <paramref name="read"/>.</summary>
    public static void Read<T>(DuckDBConnection connection, string sql, IReadOnlyList<T> rows, Func<T, object?[]> columns, Action<DuckDBDataReader> read)
    {
        foreach (var command in Commands(connection, sql, rows, columns))
        {
            using (command)
            using (var reader = command.ExecuteReader())
            {
                while (reader.Read())
                {
                    read(reader);
                }
            }
        }
    }
}
