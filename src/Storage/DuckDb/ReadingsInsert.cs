using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using DuckDB.NET.Data;
using DuckDB.NET.Native;

namespace Telemetry.Storage.DuckDb;

/// <summary>
/// Inserts a commit's readings with one statement prepared once per readings file: <c>INSERT INTO file.readings
/// (...) SELECT ... FROM f()</c>, where <c>f</c> is a table function of this instance's own (registered in the
/// database's catalog under a name no other instance has) that hands DuckDB the rows staged here, column by column,
/// straight into its vectors.
/// </summary>
/// <remarks>
/// DuckDB's appender parses, binds, optimises and plans an INSERT statement of its own for every flush, about a
/// quarter of a small commit's CPU; a prepared statement is planned once. The rows are staged as columns (series id,
/// time in microseconds, value, batch sequence), so filling a vector is a copy; the commit id is the same for every row
/// of a commit. An INSERT refused stores nothing (DuckDB rolls back its own transaction, or the caller rolls back its).
/// The function yields rows only while <see cref="Insert"/> runs: called from anywhere else, it yields none. Not
/// thread-safe: the commit loop, the one writer of new readings, is its only caller; DuckDB may run the function on a
/// worker thread of its own, while that caller waits in the statement's execution.
/// </remarks>
internal sealed unsafe class ReadingsInsert : IDisposable
{
    private static readonly (string Name, DuckDBType Type)[] Columns =
    [
        ("series_id", DuckDBType.Integer),
        ("ts", DuckDBType.Timestamp),
        ("value", DuckDBType.Double),
        ("commit_id", DuckDBType.BigInt),
        ("seq", DuckDBType.UnsignedBigInt),
    ];

    // The rows an output chunk holds: DuckDB's vector size, as the native library was built.
    private static readonly int VectorSize = NativeVectorSize();

    private static int _functions;

    private readonly DuckDBConnection _connection;
    private readonly Dictionary<string, DuckDBPreparedStatement> _statements = [];
    private int[] _series = new int[1024];
    private long[] _micros = new long[1024];
    private double[] _values = new double[1024];
    private ulong[] _sequences = new ulong[1024];
    private int _count;
    private int _produced;
    private long _commitId;
    private bool _inserting;

    public ReadingsInsert(DuckDBConnection connection)
    {
        _connection = connection;
        Function = $"telemetry_staged_readings_{Interlocked.Increment(ref _functions)}";

        var function = NativeMethods.TableFunction.DuckDBCreateTableFunction();
        try
        {
            NativeMethods.TableFunction.DuckDBTableFunctionSetName(function, Function);

            // DuckDB owns the handle from here and frees it when the function is destroyed with the database. A weak
            // one: the function, which lives as long as the database, does not keep a store's connection alive.
            NativeMethods.TableFunction.DuckDBTableFunctionSetExtraInfo(function, GCHandle.ToIntPtr(GCHandle.Alloc(this, GCHandleType.Weak)), &FreeHandle);
            NativeMethods.TableFunction.DuckDBTableFunctionSetBind(function, &Bind);
            NativeMethods.TableFunction.DuckDBTableFunctionSetInit(function, &Init);
            NativeMethods.TableFunction.DuckDBTableFunctionSetFunction(function, &Produce);
            if (NativeMethods.TableFunction.DuckDBRegisterTableFunction(connection.NativeConnection, function) != DuckDBState.Success)
            {
                throw new DuckDbStoreException($"DuckDB refused the table function {Function}.");
            }
        }
        finally
        {
            NativeMethods.TableFunction.DuckDBDestroyTableFunction(ref function);
        }
    }

    /// <summary>The table function's name in the database's catalog.</summary>
    public string Function { get; }

    /// <summary>How many rows are staged.</summary>
    public int Count => _count;

    /// <summary>Stages one reading; <paramref name="timestampMs"/> is clamped as <see cref="Timestamps"/> does.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Add(int seriesId, long timestampMs, double value, ulong sequence)
    {
        if (_count == _series.Length)
        {
            Grow();
        }

        _series[_count] = seriesId;
        _micros[_count] = Timestamps.ToMicroseconds(timestampMs);
        _values[_count] = value;
        _sequences[_count] = sequence;
        _count++;
    }

    /// <summary>Drops the staged rows.</summary>
    public void Clear() => _count = 0;

    /// <summary>
    /// Inserts the staged rows into <paramref name="catalog"/>'s readings with <paramref name="commitId"/>, in the
    /// connection's open transaction if any, else in one of their own; then drops them, stored or not.
    /// </summary>
    public void Insert(string catalog, long commitId)
    {
        if (_count == 0)
        {
            return;
        }

        _commitId = commitId;
        _produced = 0;
        _inserting = true;
        try
        {
            if (!_statements.TryGetValue(catalog, out var statement))
            {
                statement = Prepare(catalog);
                _statements[catalog] = statement;
            }

            var state = NativeMethods.PreparedStatements.DuckDBExecutePrepared(statement, out var result);
            try
            {
                if (state != DuckDBState.Success)
                {
                    throw new DuckDbStoreException($"Storing {_count} readings in {catalog} failed: {NativeMethods.Query.DuckDBResultError(ref result)}");
                }
            }
            finally
            {
                NativeMethods.Query.DuckDBDestroyResult(ref result);
            }
        }
        finally
        {
            _inserting = false;
            Clear();
        }
    }

    public void Dispose()
    {
        foreach (var statement in _statements.Values)
        {
            statement.Dispose();
        }

        _statements.Clear();
        _series = [];
        _micros = [];
        _values = [];
        _sequences = [];
        _count = 0;
    }

    private DuckDBPreparedStatement Prepare(string catalog)
    {
        var columns = string.Join(", ", Columns.Select(column => column.Name));
        var sql = $"INSERT INTO \"{catalog}\".main.readings ({columns}) SELECT {columns} FROM {Function}()";
        if (NativeMethods.PreparedStatements.DuckDBPrepare(_connection.NativeConnection, sql, out var statement) != DuckDBState.Success)
        {
            var error = NativeMethods.PreparedStatements.DuckDBPrepareError(statement);
            statement.Dispose();
            throw new DuckDbStoreException($"Preparing the insert of readings into {catalog} failed: {error}");
        }

        return statement;
    }

    private void Grow()
    {
        var length = _series.Length * 2;
        Array.Resize(ref _series, length);
        Array.Resize(ref _micros, length);
        Array.Resize(ref _values, length);
        Array.Resize(ref _sequences, length);
    }

    /// <summary>Fills DuckDB's output chunk with up to one vector of the staged rows; none left ends the scan.</summary>
    private void Fill(IntPtr output)
    {
        var count = _inserting ? Math.Min(VectorSize, _count - _produced) : 0;
        using var chunk = new DuckDBDataChunk(output);
        if (count > 0)
        {
            _series.AsSpan(_produced, count).CopyTo(Column<int>(chunk, 0, count));
            _micros.AsSpan(_produced, count).CopyTo(Column<long>(chunk, 1, count));
            _values.AsSpan(_produced, count).CopyTo(Column<double>(chunk, 2, count));
            Column<long>(chunk, 3, count).Fill(_commitId);
            _sequences.AsSpan(_produced, count).CopyTo(Column<ulong>(chunk, 4, count));
            _produced += count;
        }

        NativeMethods.DataChunks.DuckDBDataChunkSetSize(chunk, (ulong)count);
    }

    private static Span<T> Column<T>(DuckDBDataChunk chunk, int column, int count)
        where T : unmanaged =>
        new(NativeMethods.Vectors.DuckDBVectorGetData(NativeMethods.DataChunks.DuckDBDataChunkGetVector(chunk, column)), count);

    private static int NativeVectorSize()
    {
        var library = NativeLibrary.Load("duckdb", typeof(NativeMethods).Assembly, searchPath: null);
        var vectorSize = ((delegate* unmanaged[Cdecl]<ulong>)NativeLibrary.GetExport(library, "duckdb_vector_size"))();
        return checked((int)vectorSize);
    }

    // The callbacks below run inside DuckDB: an exception may not leave them, so those that can throw report it as
    // DuckDB's error.
    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void Bind(IntPtr info)
    {
        try
        {
            foreach (var (name, type) in Columns)
            {
                using var logicalType = NativeMethods.LogicalType.DuckDBCreateLogicalType(type);
                NativeMethods.TableFunction.DuckDBBindAddResultColumn(info, name, logicalType);
            }
        }
        catch (Exception exception)
        {
            NativeMethods.TableFunction.DuckDBBindSetError(info, exception.Message);
        }
    }

    // Nothing to set up per execution (Insert does), but DuckDB registers no table function without an init.
    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void Init(IntPtr info)
    {
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void Produce(IntPtr info, IntPtr output)
    {
        try
        {
            if (GCHandle.FromIntPtr(NativeMethods.TableFunction.DuckDBFunctionGetExtraInfo(info)).Target is not ReadingsInsert insert)
            {
                throw new ObjectDisposedException(nameof(ReadingsInsert));
            }

            insert.Fill(output);
        }
        catch (Exception exception)
        {
            NativeMethods.TableFunction.DuckDBFunctionSetError(info, exception.Message);
        }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void FreeHandle(IntPtr handle) => GCHandle.FromIntPtr(handle).Free();
}
