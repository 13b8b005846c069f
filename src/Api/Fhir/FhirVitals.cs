using System.Collections.Frozen;
using Telemetry.Core.Vitals;

namespace Telemetry.Api.Fhir;

/// <summary>
/// What FHIR calls Telemetry's vitals: one series per catalogue vital, and the blood pressure panel (85354-9) whose
/// components are the systolic and diastolic series. Codes are LOINC, units UCUM, as the R4 vital signs profile has them.
/// Blood glucose is a laboratory result and steps and sleep are activity, not vital signs: they are filed under those
/// categories and claim no vital signs profile (whose units, bound as required, have no mg/dL, steps or hours).
/// </summary>
public static class FhirVitals
{
    public const string Loinc = "http://loinc.org";
    public const string Ucum = "http://unitsofmeasure.org";
    public const string CategorySystem = "http://terminology.hl7.org/CodeSystem/observation-category";
    public const string VitalSignsCategory = "vital-signs";
    public const string LaboratoryCategory = "laboratory";
    public const string ActivityCategory = "activity";

    /// <summary>The observation categories Observations here are filed under, each with its display.</summary>
    public static IReadOnlyDictionary<string, string> Categories { get; } = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        [VitalSignsCategory] = "Vital Signs",
        [LaboratoryCategory] = "Laboratory",
        [ActivityCategory] = "Activity",
    };

    /// <summary>The category a vital's Observations are filed under.</summary>
    public static string CategoryOf(VitalKind kind) => kind switch
    {
        VitalKind.BloodGlucose => LaboratoryCategory,
        VitalKind.Steps or VitalKind.SleepDuration => ActivityCategory,
        _ => VitalSignsCategory,
    };
    public const string StatisticsSystem = "http://terminology.hl7.org/CodeSystem/observation-statistics";
    public const string DataAbsentSystem = "http://terminology.hl7.org/CodeSystem/data-absent-reason";
    public const string DeviceIdentifierSystem = "urn:telemetry:device";
    public const string ProfileBase = "http://hl7.org/fhir/StructureDefinition/";
    public const string VitalSignsProfile = ProfileBase + "vitalsigns";

    /// <summary>Every series in the order searches list them: single vitals first, then the blood pressure panel.</summary>
    public static IReadOnlyList<FhirSeries> All { get; } =
    [
        .. VitalCatalogue.All
            .Where(v => v.Kind is not (VitalKind.SystolicPressure or VitalKind.DiastolicPressure))
            .Select(v => new FhirSeries(v.Name, [v], Profile(v.Kind))),
        new FhirSeries(VitalCatalogue.BloodPressure.Name, [VitalCatalogue.BloodPressure.First, VitalCatalogue.BloodPressure.Second], ProfileBase + "bp"),
    ];

    /// <summary>The series a LOINC code names. Systolic and diastolic alone are series of their own, besides the panel.</summary>
    private static readonly FrozenDictionary<string, FhirSeries> ByCode = BuildCodeIndex();

    /// <summary>Finds the series of a LOINC code.</summary>
    public static bool TryFindByCode(string code, out FhirSeries series) => ByCode.TryGetValue(code, out series!);

    /// <summary>The unit as people read it, shown beside the UCUM code.</summary>
    public static string UnitDisplay(VitalDefinition vital) => vital.Unit switch
    {
        "/min" when vital.Kind is VitalKind.RespiratoryRate => "breaths/minute",
        "/min" => "beats/minute",
        "Cel" => "C",
        "mm[Hg]" => "mmHg",
        "{steps}" => "steps",
        _ => vital.Unit,
    };

    private static string? Profile(VitalKind kind) => kind switch
    {
        VitalKind.HeartRate => ProfileBase + "heartrate",
        VitalKind.RespiratoryRate => ProfileBase + "resprate",
        VitalKind.OxygenSaturation => ProfileBase + "oxygensat",
        VitalKind.BodyTemperature => ProfileBase + "bodytemp",
        VitalKind.BodyWeight => ProfileBase + "bodyweight",
        _ => null,
    };

    private static FrozenDictionary<string, FhirSeries> BuildCodeIndex()
    {
        var index = new Dictionary<string, FhirSeries>(StringComparer.Ordinal);
        foreach (var series in All)
        {
            foreach (var code in series.Codes)
            {
                index[code] = series;
            }
        }

        foreach (var part in new[] { VitalCatalogue.BloodPressure.First, VitalCatalogue.BloodPressure.Second })
        {
            index[part.Loinc] = new FhirSeries(part.Name, [part], null);
        }

        return index.ToFrozenDictionary(StringComparer.Ordinal);
    }
}

/// <summary>One kind of Observation: a single vital, or a panel of two (blood pressure).</summary>
public sealed record FhirSeries(string Name, IReadOnlyList<VitalDefinition> Parts, string? SpecificProfile)
{
    public bool IsPanel => Parts.Count > 1;

    /// <summary>The LOINC code the Observation is filed under.</summary>
    public string Code => IsPanel ? VitalCatalogue.BloodPressure.Loinc : Parts[0].Loinc;

    public string Display => IsPanel ? VitalCatalogue.BloodPressure.Display : Parts[0].Display;

    /// <summary>Every LOINC code the Observation carries (SpO2 has both 59408-5 and 2708-6, as US Core expects).</summary>
    public IReadOnlyList<string> Codes => IsPanel
        ? [Code]
        : [Code, .. Parts[0].Aliases.Where(alias => char.IsAsciiDigit(alias[0]))];

    /// <summary>The observation category its Observations are filed under (a panel's: its parts', vital signs).</summary>
    public string Category => FhirVitals.CategoryOf(Parts[0].Kind);

    /// <summary>The profiles its Observations claim: the vital signs profile and its specific one, for vital signs only.</summary>
    public IEnumerable<string> Profiles => Category != FhirVitals.VitalSignsCategory ? []
        : SpecificProfile is null ? [FhirVitals.VitalSignsProfile] : [FhirVitals.VitalSignsProfile, SpecificProfile];
}
