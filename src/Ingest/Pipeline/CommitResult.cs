using Telemetry.Core.Readings;

namespace Telemetry.Ingest.Pipeline;

/// <summary>What became of one device batch handed to the <see cref="CommitPipeline"/>.</summary>
public readonly record struct CommitResult(CommitOutcome Outcome, int Readings);
