namespace Telemetry.Storage.DuckDb;

/// <summary>DuckDB refused a statement the store runs through its C API; the message is DuckDB's error.</summary>
public sealed class DuckDbStoreException(string message) : Exception(message);
