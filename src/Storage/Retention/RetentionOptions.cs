using System.ComponentModel.DataAnnotations;

namespace Telemetry.Storage.Retention;

/// <summary>
/// How long each resolution is kept, in days (0 keeps it forever). Raw readings go first while the rollups that
/// summarise them stay: each coarser resolution is kept at least as long as the finer one.
/// </summary>
public sealed class RetentionOptions : IValidatableObject
{
    public const string Section = "Telemetry:Retention";

    /// <summary>
    /// Raw readings (and quarantined ones). At least a day more than the ingest backfill horizon (the server refuses to
    /// start otherwise): a late reading's windows are recomputed from them, and a resend is still recognised.
    /// </summary>
    [Range(0, 36_500)]
    public int RawDays { get; set; } = 90;

    /// <summary>1-minute rollups.</summary>
    [Range(0, 36_500)]
    public int MinuteRollupDays { get; set; } = 180;

    /// <summary>1-hour rollups.</summary>
    [Range(0, 36_500)]
    public int HourRollupDays { get; set; } = 1_095;

    /// <summary>1-day rollups; forever by default.</summary>
    [Range(0, 36_500)]
    public int DayRollupDays { get; set; }

    /// <summary>
    /// Alert history: events older than this, and alerts raised before it that are no longer open (an open alert stays
    /// however old). A year by default: in a cluster the history lives in Redis's memory.
    /// </summary>
    [Range(0, 36_500)]
    public int AlertDays { get; set; } = 365;

    /// <summary>How often the retention job runs.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "7.00:00:00")]
    public TimeSpan Interval { get; set; } = TimeSpan.FromHours(1);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        // A patient's grain rebuilds yesterday and today from raw readings, so those must still be there.
        if (RawDays is > 0 and < 3)
        {
            yield return new ValidationResult("Raw readings are kept at least 3 days (or 0, forever): patients' live windows are rebuilt from them.", [nameof(RawDays)]);
        }

        (string Name, int Days)[] ladder = [(nameof(RawDays), RawDays), (nameof(MinuteRollupDays), MinuteRollupDays), (nameof(HourRollupDays), HourRollupDays), (nameof(DayRollupDays), DayRollupDays)];
        for (var i = 1; i < ladder.Length; i++)
        {
            var (finer, finerDays) = ladder[i - 1];
            var (coarser, coarserDays) = ladder[i];
            if (coarserDays != 0 && (finerDays == 0 || coarserDays < finerDays))
            {
                yield return new ValidationResult($"{coarser} ({coarserDays}) must be 0 (forever) or at least {finer} ({finerDays}), so summaries outlive what they summarise.", [coarser]);
            }
        }
    }
}
