using DuckDB.NET.Data;
using Telemetry.Storage.DuckDb;

namespace Telemetry.Storage.Tests.DuckDb;

/// <summary>The prepared insert of a commit's readings, on in-memory DuckDB databases of their own.</summary>
public sealed class ReadingsInsertTests : IDisposable
{
    private const long T0 = 1_780_000_000_000;

    private readonly DuckDBConnection _connection = new("DataSource=:memory:");
    private readonly ReadingsInsert _insert;

    public ReadingsInsertTests()
    {
        _connection.Open();
        Run("""
            ATTACH ':memory:' AS one;
            ATTACH ':memory:' AS two;
            CREATE TABLE one.readings (series_id INTEGER NOT NULL, ts TIMESTAMP NOT NULL, value DOUBLE NOT NULL, commit_id BIGINT NOT NULL, seq UBIGINT NOT NULL);
            CREATE TABLE two.readings (series_id INTEGER NOT NULL, ts TIMESTAMP NOT NULL, value DOUBLE NOT NULL CHECK (value < 1000), commit_id BIGINT NOT NULL, seq UBIGINT NOT NULL);
            """);
        _insert = new ReadingsInsert(_connection);
    }

    public void Dispose()
    {
        _insert.Dispose();
        _connection.Dispose();
    }

    [Fact]
    public void Rows_of_several_vectors_are_stored_in_order_with_the_commit_id()
    {
        // 5,000 rows: two full vectors of DuckDB's 2,048 and part of a third.
        for (var i = 0; i < 5_000; i++)
        {
            _insert.Add(i % 7, T0 + i, i / 4.0, (ulong)(i / 10) + 1);
        }

        _insert.Insert("one", commitId: 42);

        var rows = Rows("SELECT series_id, epoch_ms(ts), value, commit_id, seq FROM one.readings ORDER BY rowid");
        Assert.Equal(5_000, rows.Count);
        for (var i = 0; i < rows.Count; i++)
        {
            Assert.Equal((i % 7, T0 + i, i / 4.0, 42L, (ulong)(i / 10) + 1), rows[i]);
        }

        Assert.Equal(0, _insert.Count);
    }

    [Fact]
    public void Each_insert_takes_the_rows_staged_since_the_one_before_into_its_own_file()
    {
        _insert.Add(1, T0, 60, 1);
        _insert.Add(1, T0 + 1_000, 61, 1);
        _insert.Insert("one", commitId: 1);
        _insert.Add(2, T0 + 2_000, 62, 7);
        _insert.Insert("two", commitId: 2);
        _insert.Add(1, T0 + 3_000, 63, 2);
        _insert.Insert("one", commitId: 3);

        Assert.Equal(
            [(1, T0, 60.0, 1L, 1UL), (1, T0 + 1_000, 61.0, 1L, 1UL), (1, T0 + 3_000, 63.0, 3L, 2UL)],
            Rows("SELECT series_id, epoch_ms(ts), value, commit_id, seq FROM one.readings ORDER BY rowid"));
        Assert.Equal([(2, T0 + 2_000, 62.0, 2L, 7UL)], Rows("SELECT series_id, epoch_ms(ts), value, commit_id, seq FROM two.readings"));
    }

    [Fact]
    public void A_failed_insert_stores_none_of_its_rows_and_the_next_one_goes_on()
    {
        // The row DuckDB refuses is in the second vector: the first was handed over already.
        for (var i = 0; i < 3_000; i++)
        {
            _insert.Add(1, T0 + i, i == 2_500 ? 1_000 : 60, 1);
        }

        var error = Assert.Throws<DuckDbStoreException>(() => _insert.Insert("two", commitId: 1));
        Assert.Contains("two", error.Message, StringComparison.Ordinal);
        Assert.Equal(0, _insert.Count);
        Assert.Empty(Rows("SELECT series_id, epoch_ms(ts), value, commit_id, seq FROM two.readings"));

        _insert.Add(1, T0, 60, 2);
        _insert.Insert("two", commitId: 2);
        Assert.Equal([(1, T0, 60.0, 2L, 2UL)], Rows("SELECT series_id, epoch_ms(ts), value, commit_id, seq FROM two.readings"));
    }

    [Fact]
    public void An_insert_in_an_open_transaction_is_rolled_back_with_it()
    {
        using (var transaction = _connection.BeginTransaction())
        {
            _insert.Add(1, T0, 60, 1);
            _insert.Insert("one", commitId: 1);
            transaction.Rollback();
        }

        Assert.Empty(Rows("SELECT series_id, epoch_ms(ts), value, commit_id, seq FROM one.readings"));
    }

    [Fact]
    public void Times_beyond_what_a_timestamp_holds_are_clamped_as_the_store_clamps_them()
    {
        _insert.Add(1, long.MaxValue, 60, 1);
        _insert.Add(1, long.MinValue, 61, 1);
        _insert.Insert("one", commitId: 1);

        var times = Rows("SELECT series_id, epoch_ms(ts), value, commit_id, seq FROM one.readings ORDER BY rowid").Select(row => row.TimestampMs);
        Assert.Equal(
            [new DateTimeOffset(Timestamps.ToDateTime(long.MaxValue)).ToUnixTimeMilliseconds(), new DateTimeOffset(Timestamps.ToDateTime(long.MinValue)).ToUnixTimeMilliseconds()],
            times);
    }

    [Fact]
    public void Nothing_staged_runs_no_statement()
    {
        // A file without the table: an insert of nothing does not even prepare its statement.
        Run("ATTACH ':memory:' AS empty");

        _insert.Insert("empty", commitId: 1);

        Assert.Equal(0, _insert.Count);
        Assert.Equal(0L, Scalar("SELECT count(*) FROM duckdb_tables() WHERE database_name = 'empty'"));
    }

    [Fact]
    public void A_commit_of_more_rows_than_a_row_group_is_refused_whole()
    {
        // A readings-only commit is one INSERT that commits by itself: a row refused past DuckDB's first row group
        // (122,880 rows) leaves none of the 250,000 stored.
        for (var i = 0; i < 250_000; i++)
        {
            _insert.Add(1, T0 + i, i == 200_000 ? 1_000 : 60, 1);
        }

        Assert.Throws<DuckDbStoreException>(() => _insert.Insert("two", commitId: 1));

        Assert.Equal(0L, Scalar("SELECT count(*) FROM two.readings"));
    }

    [Fact]
    public void The_function_yields_no_rows_outside_an_insert()
    {
        // Registered in the database's catalog, it can be called from any statement: only the insert takes the rows.
        _insert.Add(1, T0, 60, 1);

        Assert.Equal(0L, Scalar($"SELECT count(*) FROM {_insert.Function}()"));

        _insert.Insert("one", commitId: 1);
        Assert.Equal([(1, T0, 60.0, 1L, 1UL)], Rows("SELECT series_id, epoch_ms(ts), value, commit_id, seq FROM one.readings"));
    }

    [Fact]
    public void Two_inserts_on_one_database_keep_their_rows_apart()
    {
        using var other = new ReadingsInsert(_connection);
        _insert.Add(1, T0, 60, 1);
        other.Add(2, T0 + 1_000, 61, 1);

        other.Insert("one", commitId: 2);
        _insert.Insert("one", commitId: 1);

        Assert.NotEqual(_insert.Function, other.Function);
        Assert.Equal(
            [(2, T0 + 1_000, 61.0, 2L, 1UL), (1, T0, 60.0, 1L, 1UL)],
            Rows("SELECT series_id, epoch_ms(ts), value, commit_id, seq FROM one.readings ORDER BY rowid"));
    }

    [Fact]
    public void A_file_without_the_table_is_refused_with_duckdb_s_reason_and_the_rows_are_dropped()
    {
        Run("ATTACH ':memory:' AS empty");
        _insert.Add(1, T0, 60, 1);

        var error = Assert.Throws<DuckDbStoreException>(() => _insert.Insert("empty", commitId: 1));

        Assert.Contains("readings", error.Message, StringComparison.Ordinal);
        Assert.Equal(0, _insert.Count);
    }

    private void Run(string sql)
    {
        using var command = _connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    private long Scalar(string sql)
    {
        using var command = _connection.CreateCommand();
        command.CommandText = sql;
        return Convert.ToInt64(command.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture);
    }

    private List<(int SeriesId, long TimestampMs, double Value, long CommitId, ulong Sequence)> Rows(string sql)
    {
        using var command = _connection.CreateCommand();
        command.CommandText = sql;
        using var reader = command.ExecuteReader();
        var rows = new List<(int, long, double, long, ulong)>();
        while (reader.Read())
        {
            rows.Add((reader.GetInt32(0), reader.GetInt64(1), reader.GetDouble(2), reader.GetInt64(3), reader.GetFieldValue<ulong>(4)));
        }

        return rows;
    }
}
