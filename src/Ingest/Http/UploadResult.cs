namespace Telemetry.Ingest.Http;

/// <summary>The answer to a bulk upload: what was stored, what was already stored, and what was refused and why.</summary>
public sealed record UploadResult(long Accepted, long Duplicates, long Rejected, IReadOnlyDictionary<string, long> Rejects);
