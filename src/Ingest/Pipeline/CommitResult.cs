using Telemetry.Core.Readings;
using Telemetry.Ingest.Codecs;

namespace Telemetry.Ingest.Pipeline;

/// <summary>
/// What became of one device batch handed to the <see cref="CommitPipeline"/>: readings stored, readings not stored again
/// because they were already, readings not stored because another value is stored for their device, vital and time
/// (conflicts), and implausible readings kept in quarantine (not those kept before).
/// </summary>
public readonly record struct CommitResult(CommitOutcome Outcome, int Stored, int Duplicates, int Quarantined, int Conflicts = 0)
{
    /// <summary>
    /// True when the batch's readings conflict and none was stored or already stored: nothing of it taken (its
    /// quarantined readings, if any, are refused as implausible), so it is refused as a whole.
    /// </summary>
    public bool AllConflicting => Conflicts > 0 && Stored == 0 && Duplicates == 0;

    /// <summary>What to tell the sender of a stored batch, with the decoder's <paramref name="rejects"/>: null when every reading was new and valid.</summary>
    public string? Describe(string? rejects)
    {
        string?[] parts =
        [
            rejects,
            Conflicts == 0 ? null : DescribeConflicts(Conflicts),
            Duplicates == 0 ? null : $"{Duplicates} reading{(Duplicates == 1 ? " was" : "s were")} already stored",
        ];
        return parts.Any(part => part is not null) ? string.Join("; ", parts.OfType<string>()) : null;
    }

    /// <summary>What a sender is told of a batch resent under a sequence number already committed, with the readings refused as it was read.</summary>
    public static string DescribeDuplicateBatch(ulong sequence, string? rejects) =>
        rejects is null ? $"batch {sequence} was already committed; not stored again" : $"batch {sequence} was already committed; not stored again; {rejects}";

    /// <summary>What a sender is told of <paramref name="conflicts"/> readings refused as conflicting.</summary>
    public static string DescribeConflicts(int conflicts) =>
        $"{conflicts} reading{(conflicts == 1 ? "" : "s")} rejected: {conflicts} {RejectReason.Conflict.Describe()}";
}
