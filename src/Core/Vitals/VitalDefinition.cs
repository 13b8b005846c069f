using System.Text;

namespace Telemetry.Core.Vitals;

/// <summary>One entry of the vital catalogue: names, LOINC coding, canonical UCUM unit and plausible range.</summary>
public sealed record VitalDefinition(
    VitalKind Kind,
    string Name,
    string Loinc,
    string Display,
    string Unit,
    double PlausibleMin,
    double PlausibleMax,
    IReadOnlyList<UnitConversion> Units)
{
    private readonly string? _label;

    /// <summary>What people call the vital in a sentence ("SpO2", "resting heart rate"); the LOINC display when not set.</summary>
    public string Label
    {
        get => _label ?? Display;
        init => _label = value;
    }

    /// <summary>
    /// A count or amount that adds up over time (steps, hours of sleep): a window's total is the sum of its readings,
    /// and their mean says little.
    /// </summary>
    public bool IsCumulative { get; init; }

    /// <summary>
    /// How far apart, in the canonical unit, two values of this vital from one device at one time may be and still be the
    /// same reading sent again, not a conflict: what converting it from another unit and rounding it as an app shows it
    /// leaves (a weight of 70.0 kg sent again as 154.3 lb, 69.99 kg), well under anything that would tell a patient's
    /// readings apart.
    /// </summary>
    public required double SameReadingWithin { get; init; }

    /// <summary>
    /// Whether a reading sent again with <paramref name="sent"/> repeats the one stored with <paramref name="stored"/> (a
    /// duplicate) rather than contradicting it (a conflict): within <see cref="SameReadingWithin"/>, or equal but for the
    /// last bits of a conversion.
    /// </summary>
    public bool IsSameReading(double stored, double sent) =>
        stored == sent
        || Math.Abs(stored - sent) <= Math.Max(SameReadingWithin, 1e-9 * Math.Max(1, Math.Max(Math.Abs(stored), Math.Abs(sent))));

    /// <summary>Other names and LOINC codes a sender may use for this vital.</summary>
    public IReadOnlyList<string> Aliases { get; init; } = [];

    public bool IsPlausible(double canonicalValue) =>
        double.IsFinite(canonicalValue) && canonicalValue >= PlausibleMin && canonicalValue <= PlausibleMax;

    /// <summary>
    /// Finds how to convert from <paramref name="unit"/>; an empty unit means the canonical one. Matched as written first,
    /// then regardless of ASCII case (<c>mg/dl</c>, <c>BPM</c>): UCUM is case-sensitive, but no two units a vital takes
    /// differ only in case (the catalogue's check), so a device's casing never changes what its reading means.
    /// </summary>
    public UnitConversion? FindUnit(ReadOnlySpan<char> unit)
    {
        if (unit.IsEmpty)
        {
            return Units[0];
        }

        // Indexed, not enumerated: an enumerator of the list would be allocated for every reading decoded.
        for (var i = 0; i < Units.Count; i++)
        {
            if (unit.SequenceEqual(Units[i].Unit))
            {
                return Units[i];
            }
        }

        for (var i = 0; i < Units.Count; i++)
        {
            if (Ascii.EqualsIgnoreCase(unit, Units[i].Unit))
            {
                return Units[i];
            }
        }

        return null;
    }

    /// <summary>Finds how to convert from a unit given as UTF-8 bytes, as <see cref="FindUnit(ReadOnlySpan{char})"/> does; empty means the canonical one.</summary>
    public UnitConversion? FindUnit(ReadOnlySpan<byte> utf8Unit)
    {
        if (utf8Unit.IsEmpty)
        {
            return Units[0];
        }

        for (var i = 0; i < Units.Count; i++)
        {
            if (utf8Unit.SequenceEqual(Units[i].Utf8))
            {
                return Units[i];
            }
        }

        for (var i = 0; i < Units.Count; i++)
        {
            if (Ascii.EqualsIgnoreCase(utf8Unit, Units[i].Utf8))
            {
                return Units[i];
            }
        }

        return null;
    }
}
