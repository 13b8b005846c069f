namespace Telemetry.Ingest.Pipeline;

/// <summary>The raw store could not commit a batch; nothing of it was acknowledged, and the sender should retry.</summary>
public sealed class StoreUnavailableException(string message, Exception? innerException = null) : Exception(message, innerException);
