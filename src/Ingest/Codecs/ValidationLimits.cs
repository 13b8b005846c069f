namespace Telemetry.Ingest.Codecs;

/// <summary>The bounds a reading's time and a batch's size are checked against.</summary>
public sealed record ValidationLimits(TimeSpan MaxFutureSkew, TimeSpan BackfillHorizon, int MaxReadingsPerBatch)
{
    public static ValidationLimits Default { get; } = new(TimeSpan.FromMinutes(10), TimeSpan.FromDays(30), 10_000);
}
