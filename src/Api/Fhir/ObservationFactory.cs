using System.Security.Cryptography;
using System.Text;
using Hl7.Fhir.Model;
using Telemetry.Core.Rollups;
using Telemetry.Core.Storage;
using Telemetry.Core.Vitals;

namespace Telemetry.Api.Fhir;

/// <summary>
/// Builds the Observations Telemetry serves. A raw reading is an Observation at its time. A rollup window is one
/// Observation over its <c>effectivePeriod</c> whose value is the window's mean, with the window's minimum, maximum and
/// count as components coded from FHIR's statistics code system (the coding <c>$stats</c> uses); in a panel, such a
/// component also carries the LOINC code of the part it describes.
/// </summary>
public static class ObservationFactory
{
    /// <summary>The statistic codes of the observation-statistics code system this server computes.</summary>
    public static IReadOnlyList<string> Statistics { get; } = ["average", "minimum", "maximum", "count", "sum", "std-dev", "variance"];

    /// <summary>
    /// One Observation per rollup window of a series; a panel's windows are paired by start. A window still open at
    /// <paramref name="nowMs"/> (this hour's) is <c>preliminary</c>: its values change under the same id until it ends.
    /// Its <c>meta.versionId</c> is drawn from what it says (status, value and components as served), so it changes
    /// exactly when they do: a client keeping windows sees which to replace after a late upload. A raw reading's is
    /// drawn the same way.
    /// </summary>
    public static Observation FromWindow(string patientId, FhirSeries series, Resolution resolution, IReadOnlyList<RollupWindow?> parts, long nowMs)
    {
        var observation = WindowContent(patientId, series, resolution, parts, nowMs);
        (observation.Meta ??= new Meta()).VersionId = ContentVersion(observation);
        return observation;
    }

    private static Observation WindowContent(string patientId, FhirSeries series, Resolution resolution, IReadOnlyList<RollupWindow?> parts, long nowMs)
    {
        var start = parts.First(part => part is not null)!.Value.StartMs;
        var observation = New(patientId, series, $"{resolution.ToWireName()}|{start}");
        var end = start + resolution.Milliseconds();
        observation.Effective = new Period(Instant(start), Instant(end));
        if (end > nowMs)
        {
            observation.Status = ObservationStatus.Preliminary;
        }

        if (!series.IsPanel)
        {
            // A cumulative vital's window (the steps of an hour) is its total; the mean of its readings is a statistic.
            var window = parts[0]!.Value;
            var vital = series.Parts[0];
            observation.Value = Quantity(vital, vital.IsCumulative ? window.Sum : window.Mean);
            observation.Component.AddRange(WindowStatistics(vital, window));
            if (vital.IsCumulative)
            {
                observation.Component.Add(Statistic(vital, "average", window));
            }

            return observation;
        }

        for (var i = 0; i < series.Parts.Count; i++)
        {
            observation.Component.Add(Component(series.Parts[i], parts[i]?.Mean));
        }

        for (var i = 0; i < series.Parts.Count; i++)
        {
            if (parts[i] is { } window)
            {
                // Each named by its part in text, not by the part's LOINC code: the panel's profile (bp) takes a
                // component coded 8480-6 or 8462-4 as that part's value, and allows one of each.
                foreach (var statistic in WindowStatistics(series.Parts[i], window))
                {
                    statistic.Code.Text = $"{series.Parts[i].Display}: {statistic.Code.Coding[0].Display}";
                    observation.Component.Add(statistic);
                }
            }
        }

        return observation;
    }

    /// <summary>One Observation per raw reading; a panel's readings are paired by device and time.</summary>
    public static Observation FromReadings(string patientId, FhirSeries series, IReadOnlyList<StoredReading?> parts)
    {
        var first = parts.First(part => part is not null)!.Value;
        var observation = New(patientId, series, $"raw|{first.TimestampMs}|{first.DeviceId}");
        observation.Effective = Instant(first.TimestampMs);
        observation.Device = new ResourceReference
        {
            Identifier = new Identifier(FhirVitals.DeviceIdentifierSystem, first.DeviceId),
            Display = first.DeviceId,
        };
        if (series.IsPanel)
        {
            for (var i = 0; i < series.Parts.Count; i++)
            {
                observation.Component.Add(Component(series.Parts[i], parts[i]?.Value));
            }
        }
        else
        {
            observation.Value = Quantity(series.Parts[0], first.Value);
        }

        // As a window's: a blood pressure's second part may come after the first was served.
        (observation.Meta ??= new Meta()).VersionId = ContentVersion(observation);
        return observation;
    }

    /// <summary>The <c>$stats</c> answer for one series: a component per statistic asked for, over the period.</summary>
    public static Observation FromStatistics(string patientId, FhirSeries series, long fromMs, long toMs, IReadOnlyList<RollupWindow?> parts, IReadOnlyList<string> statistics)
    {
        var observation = New(patientId, series, $"stats|{fromMs}|{toMs}|{string.Join(',', statistics)}");
        observation.Meta = null;
        observation.Effective = new Period(Instant(fromMs), Instant(toMs));
        if (series.IsPanel)
        {
            // As a window's: the parts the panel's profile (bp) asks for, one each, with their mean over the period.
            for (var i = 0; i < series.Parts.Count; i++)
            {
                observation.Component.Add(Component(series.Parts[i], parts[i]?.Mean));
            }
        }

        for (var i = 0; i < series.Parts.Count; i++)
        {
            var part = series.Parts[i];
            foreach (var statistic in statistics)
            {
                // A panel's statistics name their part in text, as a window's do (bp takes a component coded with the
                // part's LOINC code as that part's value).
                var component = Statistic(part, statistic, parts[i]);
                if (series.IsPanel)
                {
                    component.Code.Text = $"{part.Display}: {component.Code.Coding[0].Display}";
                }

                observation.Component.Add(component);
            }
        }

        return observation;
    }

    public static FhirDateTime Instant(long ms) =>
        new(DateTimeOffset.FromUnixTimeMilliseconds(ms));

    private static Observation New(string patientId, FhirSeries series, string identity) => new()
    {
        Id = StableId($"{patientId}|{series.Name}|{identity}"),
        Meta = series.Profiles.Any() ? new Meta { Profile = series.Profiles } : null,
        Status = ObservationStatus.Final,
        Category = { Concept(FhirVitals.CategorySystem, series.Category, FhirVitals.Categories[series.Category]) },
        Code = Code(series),
        Subject = new ResourceReference($"Patient/{patientId}"),
    };

    private static CodeableConcept Code(FhirSeries series)
    {
        var concept = new CodeableConcept { Text = series.IsPanel ? "Blood pressure" : series.Parts[0].Label };
        foreach (var code in series.Codes)
        {
            concept.Coding.Add(new Coding(FhirVitals.Loinc, code, code == series.Code ? series.Display : null));
        }

        return concept;
    }

    private static IEnumerable<Observation.ComponentComponent> WindowStatistics(VitalDefinition vital, RollupWindow window)
    {
        yield return Statistic(vital, "minimum", window);
        yield return Statistic(vital, "maximum", window);
        yield return Statistic(vital, "count", window);
    }

    private static Observation.ComponentComponent Statistic(VitalDefinition vital, string statistic, RollupWindow? window)
    {
        var component = new Observation.ComponentComponent { Code = Concept(FhirVitals.StatisticsSystem, statistic, StatisticDisplay(statistic)) };
        if (statistic == "count")
        {
            component.Value = new Integer((int)Math.Min(int.MaxValue, window?.Count ?? 0));
            return component;
        }

        double? value = window is not { Count: > 0 } w ? null : statistic switch
        {
            "average" => w.Mean,
            "minimum" => w.Min,
            "maximum" => w.Max,
            "sum" => w.Sum,
            "std-dev" => w.StandardDeviation,
            "variance" => w.StandardDeviation * w.StandardDeviation,
            _ => throw new ArgumentOutOfRangeException(nameof(statistic), statistic, "Not a statistic this server computes."),
        };
        if (value is null)
        {
            component.DataAbsentReason = Concept(FhirVitals.DataAbsentSystem, "not-applicable", "Not Applicable");
        }
        else
        {
            component.Value = statistic == "variance"
                ? new Quantity { Value = Round(value.Value) }
                : Quantity(vital, value.Value);
        }

        return component;
    }

    private static Observation.ComponentComponent Component(VitalDefinition vital, double? value)
    {
        var component = new Observation.ComponentComponent { Code = Concept(FhirVitals.Loinc, vital.Loinc, vital.Display) };
        if (value is { } v)
        {
            component.Value = Quantity(vital, v);
        }
        else
        {
            component.DataAbsentReason = Concept(FhirVitals.DataAbsentSystem, "unknown", "Unknown");
        }

        return component;
    }

    private static CodeableConcept Concept(string system, string code, string display) =>
        new() { Coding = { new Coding(system, code, display) }, Text = display };

    private static Quantity Quantity(VitalDefinition vital, double value) => new()
    {
        Value = Round(value),
        Unit = FhirVitals.UnitDisplay(vital),
        System = FhirVitals.Ucum,
        Code = vital.Unit,
    };

    /// <summary>Values as FHIR decimals: a stored reading exactly as sent, a computed one to 4 decimal places.</summary>
    private static decimal Round(double value) => Math.Round((decimal)value, 4);

    private static string StatisticDisplay(string code) => code switch
    {
        "average" => "Average",
        "minimum" => "Minimum",
        "maximum" => "Maximum",
        "count" => "Count",
        "sum" => "Sum",
        "std-dev" => "Standard Deviation",
        "variance" => "Variance",
        _ => code,
    };

    /// <summary>A short hash of what an Observation says: its status, value and components' values as served.</summary>
    private static string ContentVersion(Observation observation)
    {
        var content = new StringBuilder(observation.Status?.ToString());
        foreach (var value in observation.Component.Select(component => component.Value).Prepend(observation.Value))
        {
            content.Append('|').Append(value switch
            {
                Quantity quantity => quantity.Value?.ToString(System.Globalization.CultureInfo.InvariantCulture),
                Integer integer => integer.Value?.ToString(System.Globalization.CultureInfo.InvariantCulture),
                _ => null,
            });
        }

        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(Encoding.UTF8.GetBytes(content.ToString()), hash);
        return Convert.ToHexStringLower(hash[..8]);
    }

    /// <summary>A UUID derived from what the Observation is, so the same window or reading has the same id in every response.</summary>
    private static string StableId(string identity)
    {
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(Encoding.UTF8.GetBytes(identity), hash);
        hash[6] = (byte)((hash[6] & 0x0F) | 0x80);
        hash[8] = (byte)((hash[8] & 0x3F) | 0x80);
        return new Guid(hash[..16], bigEndian: true).ToString();
    }
}
