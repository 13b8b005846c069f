namespace Telemetry.Core.Storage;

/// <summary>
/// Windows summarised from the raw store, and the highest commit id among the readings they summarise, so a grain
/// rebuilt from them knows which commits it has already counted.
/// </summary>
public sealed record RawAggregate(IReadOnlyList<KindWindow> Windows, long HighestCommitId);
