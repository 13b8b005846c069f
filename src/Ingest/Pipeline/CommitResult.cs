using Telemetry.Core.Readings;

namespace Telemetry.Ingest.Pipeline;

/// <summary>
/// What became of one device batch handed to the <see cref="CommitPipeline"/>: readings stored, readings not stored again
/// because they were already, and implausible readings kept in quarantine (not those kept before).
/// </summary>
public readonly record struct CommitResult(CommitOutcome Outcome, int Stored, int Duplicates, int Quarantined)
{
    /// <summary>What to tell the sender of a stored batch, with the decoder's <paramref name="rejects"/>: null when every reading was new and valid.</summary>
    public string? Describe(string? rejects)
    {
        var duplicates = Duplicates == 0 ? null : $"{Duplicates} reading{(Duplicates == 1 ? " was" : "s were")} already stored";
        return (duplicates, rejects) switch
        {
            (null, _) => rejects,
            (_, null) => duplicates,
            _ => $"{rejects}; {duplicates}",
        };
    }
}
