namespace Telemetry.Ingest.Codecs;

/// <summary>The base fields SenML carries from one record to the next (RFC 8428 §4.1), for a pack read all at once or record by record.</summary>
public sealed class SenMlContext
{
    internal const int MaxNameBytes = 96;

    internal byte[] BaseName { get; } = new byte[MaxNameBytes];

    internal byte[] BaseUnit { get; } = new byte[MaxNameBytes];

    internal int BaseNameLength { get; set; }

    internal int BaseUnitLength { get; set; }

    internal double BaseTime { get; set; }

    internal double BaseValue { get; set; }

    /// <summary>Forgets the base fields, for a new pack.</summary>
    public void Reset()
    {
        BaseNameLength = 0;
        BaseUnitLength = 0;
        BaseTime = 0;
        BaseValue = 0;
    }
}
