namespace Telemetry.Ingest.Codecs;

/// <summary>The base fields SenML carries from one record to the next (RFC 8428 §4.1), for a pack read all at once or record by record.</summary>
public sealed class SenMlContext
{
    internal const int MaxNameBytes = 96;

    // A base name holds a device id (up to 128 characters) and whatever a device puts around it ("urn:dev:…:", "{id}/").
    internal const int MaxBaseNameBytes = 256;

    internal byte[] BaseName { get; } = new byte[MaxBaseNameBytes];

    internal byte[] BaseUnit { get; } = new byte[MaxNameBytes];

    internal int BaseNameLength { get; set; }

    internal int BaseUnitLength { get; set; }

    internal double BaseTime { get; set; }

    internal double BaseValue { get; set; }

    /// <summary>
    /// The latest base time of the pack could not be read (<c>"bt":"1795566587"</c>): every record from there on, until
    /// a base time that can be read, depends on it (RFC 8428 §4.1), so each is refused rather than read against a base
    /// it did not mean.
    /// </summary>
    internal bool BaseTimeUnreadable { get; set; }

    /// <summary>The latest base value could not be read: as <see cref="BaseTimeUnreadable"/>.</summary>
    internal bool BaseValueUnreadable { get; set; }

    /// <summary>The latest base unit could not be read: a record without its own unit cannot be converted.</summary>
    internal bool BaseUnitUnreadable { get; set; }

    /// <summary>Forgets the base fields, for a new pack.</summary>
    public void Reset()
    {
        BaseNameLength = 0;
        BaseUnitLength = 0;
        BaseTime = 0;
        BaseValue = 0;
        BaseTimeUnreadable = false;
        BaseValueUnreadable = false;
        BaseUnitUnreadable = false;
    }
}
