using System.Collections.Frozen;
using System.Text;

namespace Telemetry.Core.Vitals;

/// <summary>
/// The vitals Telemetry understands, coded as the FHIR R4 vital signs profile codes them (LOINC and UCUM).
/// Lookups by name, alias or LOINC code work on UTF-8 bytes too, so decoders resolve a reading's kind
/// without allocating a string.
/// </summary>
public static class VitalCatalogue
{
    private static readonly UnitConversion[] PerMinute =
        [new("/min"), new("beat/min"), new("beats/min"), new("{beats}/min"), new("bpm"), new("1/min")];

    private static readonly UnitConversion[] BreathsPerMinute =
        [new("/min"), new("{breaths}/min"), new("breaths/min"), new("1/min")];

    private static readonly UnitConversion[] MillimetresOfMercury =
        [new("mm[Hg]"), new("mmHg"), new("kPa", 7.500615758)];

    // SameReadingWithin: what a unit's conversion and an app's rounding leave between one reading sent twice (see
    // VitalDefinition.SameReadingWithin), and always less than a step of the vital as it is shown in its canonical unit, so
    // a correction by one step (37.2 to 37.3 °C, 120 to 121 mmHg) is a conflict. Temperature: a tenth of a °F rounded
    // (0.028 °C) and a tenth of a °C rounded (0.05), 0.078 at worst; pressure: a tenth of a kPa rounded (0.375 mmHg) and a
    // mmHg rounded, 0.875; weight: a tenth of a pound rounded (0.023 kg) and a tenth of a kg rounded, 0.073; glucose: a
    // tenth of a mmol/L rounded is 0.9 mg/dL alone, so a value rounded in both units may still be told a conflict (the
    // first value stands all the same); sleep: half a minute.
    private static readonly VitalDefinition[] Definitions =
    [
        new(VitalKind.HeartRate, "heart_rate", "8867-4", "Heart rate", "/min", 20, 300, PerMinute)
        {
            Aliases = ["hr", "pulse"],
            SameReadingWithin = 0.5,
        },
        new(VitalKind.RestingHeartRate, "resting_heart_rate", "40443-4", "Heart rate --resting", "/min", 20, 200, PerMinute)
        {
            Label = "Resting heart rate",
            SameReadingWithin = 0.5,
        },
        new(VitalKind.RespiratoryRate, "respiratory_rate", "9279-1", "Respiratory rate", "/min", 2, 80, BreathsPerMinute)
        {
            SameReadingWithin = 0.5,
        },
        new(VitalKind.OxygenSaturation, "spo2", "59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%", 50, 100,
            [new("%"), new("1", 100), new("/1", 100)])
        {
            Label = "SpO2",
            Aliases = ["oxygen_saturation", "2708-6"],
            SameReadingWithin = 0.5,
        },
        new(VitalKind.BodyTemperature, "body_temperature", "8310-5", "Body temperature", "Cel", 25, 45,
            [new("Cel"), new("degC"), new("°C"), new("[degF]", 5.0 / 9.0, -32 * 5.0 / 9.0), new("degF", 5.0 / 9.0, -32 * 5.0 / 9.0), new("°F", 5.0 / 9.0, -32 * 5.0 / 9.0), new("K", 1, -273.15)])
        {
            Aliases = ["temperature"],
            SameReadingWithin = 0.08,
        },
        new(VitalKind.SystolicPressure, "systolic_bp", "8480-6", "Systolic blood pressure", "mm[Hg]", 40, 300, MillimetresOfMercury)
        {
            Aliases = ["systolic"],
            SameReadingWithin = 0.9,
        },
        new(VitalKind.DiastolicPressure, "diastolic_bp", "8462-4", "Diastolic blood pressure", "mm[Hg]", 20, 200, MillimetresOfMercury)
        {
            Aliases = ["diastolic"],
            SameReadingWithin = 0.9,
        },
        new(VitalKind.Steps, "steps", "55423-8", "Number of steps", "{steps}", 0, 100_000,
            [new("{steps}"), new("steps"), new("1"), new("count")])
        {
            Label = "Steps",
            IsCumulative = true,
            SameReadingWithin = 0.5,
        },
        new(VitalKind.BodyWeight, "body_weight", "29463-7", "Body weight", "kg", 0.5, 650,
            [new("kg"), new("g", 0.001), new("[lb_av]", 0.45359237), new("lb", 0.45359237), new("lbs", 0.45359237)])
        {
            Aliases = ["weight"],
            SameReadingWithin = 0.075,
        },
        new(VitalKind.BloodGlucose, "blood_glucose", "2339-0", "Glucose [Mass/volume] in Blood", "mg/dL", 10, 1000,
            [new("mg/dL"), new("mmol/L", 18.01559)])
        {
            Label = "Blood glucose",
            Aliases = ["glucose"],
            SameReadingWithin = 0.9,
        },
        new(VitalKind.SleepDuration, "sleep_duration", "93832-4", "Sleep duration", "h", 0, 24,
            [new("h"), new("min", 1.0 / 60), new("s", 1.0 / 3600)])
        {
            Aliases = ["sleep"],
            IsCumulative = true,
            SameReadingWithin = 0.5 / 60,
        },
    ];

    private static readonly FrozenDictionary<string, VitalDefinition> ByName = BuildNameIndex();

    private static readonly (byte[] Utf8, VitalDefinition Definition)[] Utf8Names =
        [.. ByName.Select(pair => (Encoding.UTF8.GetBytes(pair.Key), pair.Value)).OrderBy(entry => entry.Item1.Length)];

    private static readonly VitalDefinition?[] ByKind = BuildKindIndex();

    /// <summary>The blood pressure panel (LOINC 85354-9): a systolic and a diastolic reading taken together.</summary>
    public static VitalPanel BloodPressure { get; } = new(
        "blood_pressure", "85354-9", "Blood pressure panel with all children optional", Get(VitalKind.SystolicPressure), Get(VitalKind.DiastolicPressure));

    /// <summary>Every vital in the catalogue.</summary>
    public static IReadOnlyList<VitalDefinition> All => Definitions;

    /// <summary>The definition of <paramref name="kind"/>.</summary>
    public static VitalDefinition Get(VitalKind kind) =>
        (byte)kind < ByKind.Length && ByKind[(byte)kind] is { } definition
            ? definition
            : throw new ArgumentOutOfRangeException(nameof(kind), kind, "Not a catalogue vital.");

    /// <summary>The definition of <paramref name="kind"/>, when it is a catalogue vital.</summary>
    public static bool TryGet(VitalKind kind, out VitalDefinition definition)
    {
        definition = (byte)kind < ByKind.Length ? ByKind[(byte)kind]! : null!;
        return definition is not null;
    }

    /// <summary>Finds a panel (a pair of vitals sent as one reading) by name or LOINC code.</summary>
    public static bool TryFindPanel(string nameOrCode, out VitalPanel panel)
    {
        panel = BloodPressure;
        return nameOrCode is "blood_pressure" or "85354-9" or "bp";
    }

    /// <summary>Finds a panel (a pair of vitals sent as one reading) by name or LOINC code given as UTF-8 bytes.</summary>
    public static bool TryFindPanel(ReadOnlySpan<byte> utf8NameOrCode, out VitalPanel panel)
    {
        panel = BloodPressure;
        return utf8NameOrCode.SequenceEqual("blood_pressure"u8) || utf8NameOrCode.SequenceEqual("85354-9"u8) || utf8NameOrCode.SequenceEqual("bp"u8);
    }

    /// <summary>
    /// Checks every entry: names and codes unique, every LOINC code well formed with its check digit right, the canonical
    /// unit first and unscaled, every conversion finite and increasing, every plausible range inside what the units allow.
    /// Throws with a message naming the entry that is wrong; the server runs it at start-up.
    /// </summary>
    public static void Validate()
    {
        _ = ByName;
        foreach (var definition in Definitions)
        {
            foreach (var code in definition.Aliases.Where(alias => char.IsAsciiDigit(alias[0])).Prepend(definition.Loinc))
            {
                if (!Loinc.IsValid(code))
                {
                    throw new InvalidOperationException($"'{definition.Name}' carries '{code}', which is not a valid LOINC code.");
                }
            }

            var canonical = definition.Units[0];
            if (canonical.Scale != 1 || canonical.Offset != 0)
            {
                throw new InvalidOperationException($"The canonical unit '{canonical.Unit}' of '{definition.Name}' must convert as itself.");
            }

            if (!(definition.PlausibleMin < definition.PlausibleMax))
            {
                throw new InvalidOperationException($"The plausible range of '{definition.Name}' is empty.");
            }

            // Values this close at one device and time are one reading sent again: it must stay far under the range.
            if (!(definition.SameReadingWithin >= 0 && definition.SameReadingWithin <= (definition.PlausibleMax - definition.PlausibleMin) / 100))
            {
                throw new InvalidOperationException($"'{definition.Name}' takes values {definition.SameReadingWithin} apart for one reading: it must be from 0 to a hundredth of its plausible range.");
            }

            foreach (var unit in definition.Units)
            {
                if (string.IsNullOrWhiteSpace(unit.Unit) || !double.IsFinite(unit.Scale) || unit.Scale <= 0 || !double.IsFinite(unit.Offset))
                {
                    throw new InvalidOperationException($"The conversion from '{unit.Unit}' for '{definition.Name}' is not a finite increasing one.");
                }

                if (definition.Units.Count(other => other.Unit == unit.Unit || Ascii.EqualsIgnoreCase(other.Unit, unit.Unit)) > 1)
                {
                    throw new InvalidOperationException($"'{definition.Name}' lists the unit '{unit.Unit}' twice (units are matched regardless of ASCII case).");
                }
            }
        }

        if (!Loinc.IsValid(BloodPressure.Loinc))
        {
            throw new InvalidOperationException($"The blood pressure panel carries '{BloodPressure.Loinc}', which is not a valid LOINC code.");
        }
    }

    /// <summary>Finds a vital by catalogue name, alias or LOINC code.</summary>
    public static bool TryFind(string nameOrCode, out VitalDefinition definition) =>
        ByName.TryGetValue(nameOrCode, out definition!);

    /// <summary>Finds a vital by catalogue name, alias or LOINC code given as UTF-8 bytes.</summary>
    public static bool TryFind(ReadOnlySpan<byte> utf8NameOrCode, out VitalDefinition definition)
    {
        foreach (var (utf8, candidate) in Utf8Names)
        {
            if (utf8NameOrCode.SequenceEqual(utf8))
            {
                definition = candidate;
                return true;
            }
        }

        definition = null!;
        return false;
    }

    private static FrozenDictionary<string, VitalDefinition> BuildNameIndex()
    {
        var index = new Dictionary<string, VitalDefinition>(StringComparer.Ordinal);
        foreach (var definition in Definitions)
        {
            foreach (var name in definition.Aliases.Prepend(definition.Loinc).Prepend(definition.Name))
            {
                if (!index.TryAdd(name, definition))
                {
                    throw new InvalidOperationException($"The vital catalogue names '{name}' twice.");
                }
            }

            if (definition.Units.Count == 0 || definition.Units[0].Unit != definition.Unit)
            {
                throw new InvalidOperationException($"The first unit of '{definition.Name}' must be its canonical unit '{definition.Unit}'.");
            }
        }

        return index.ToFrozenDictionary(StringComparer.Ordinal);
    }

    private static VitalDefinition?[] BuildKindIndex()
    {
        var index = new VitalDefinition?[Definitions.Max(d => (int)d.Kind) + 1];
        foreach (var definition in Definitions)
        {
            index[(byte)definition.Kind] = definition;
        }

        return index;
    }
}
