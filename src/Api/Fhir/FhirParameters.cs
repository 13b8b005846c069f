using System.Globalization;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Primitives;
using Telemetry.Core;

namespace Telemetry.Api.Fhir;

/// <summary>Reads FHIR search parameters: references, tokens, dates with prefixes and precision, counts.</summary>
public static partial class FhirParameters
{
    /// <summary>The patient a search or operation is about, from <c>patient</c> or <c>subject</c> (<c>Patient/{id}</c> or the bare id).</summary>
    public static bool TryReadPatient(IQueryCollection query, out string patientId, out string? error, params string[] names)
    {
        patientId = string.Empty;
        error = null;
        var values = names.SelectMany(name => query[name].Select(value => (Name: name, Value: value ?? string.Empty))).ToList();
        if (values.Count == 0)
        {
            error = $"Give the patient: {string.Join(" or ", names.Select(n => $"'{n}'"))} (Patient/{{id}}); this server searches one patient at a time.";
            return false;
        }

        var ids = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, value) in values)
        {
            if (!TryReadReference(value, out var id))
            {
                error = $"'{name}={value}' is not a patient reference: give Patient/{{id}} or the id, one patient.";
                return false;
            }

            ids.Add(id);
        }

        if (ids.Count > 1)
        {
            error = "The search names more than one patient; this server searches one patient at a time.";
            return false;
        }

        patientId = ids.Single();
        return true;
    }

    /// <summary>Reads <c>Patient/{id}</c>, a full URL ending so, or a bare id.</summary>
    public static bool TryReadReference(string value, out string patientId)
    {
        var reference = value.Trim();
        var slash = reference.LastIndexOf("Patient/", StringComparison.Ordinal);
        patientId = slash >= 0 ? reference[(slash + "Patient/".Length)..] : reference;
        return !patientId.Contains(',') && Identifier.IsValid(patientId) && (slash >= 0 || !reference.Contains('/'));
    }

    /// <summary>The tokens of a token parameter: every value split at commas (OR), each as (system or null, code).</summary>
    public static IEnumerable<(string? System, string Code)> Tokens(StringValues values) =>
        values.SelectMany(value => (value ?? string.Empty).Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            .Select(token =>
            {
                var bar = token.IndexOf('|', StringComparison.Ordinal);
                return bar < 0 ? ((string?)null, token) : (token[..bar], token[(bar + 1)..]);
            });

    /// <summary>
    /// Narrows [<paramref name="fromMs"/>, <paramref name="toMs"/>) by every <c>date</c> value: <c>ge</c>, <c>gt</c>,
    /// <c>le</c>, <c>lt</c> and <c>eq</c> (or no prefix), each at the precision given (a day, a month, a second...).
    /// A date without a time zone is UTC.
    /// </summary>
    public static bool TryNarrowByDates(StringValues values, ref long fromMs, ref long toMs, out string? error)
    {
        error = null;
        foreach (var raw in values)
        {
            var value = raw ?? string.Empty;
            var prefix = value.Length > 2 && char.IsAsciiLetter(value[0]) ? value[..2] : "eq";
            var date = prefix == "eq" && (value.Length <= 2 || !char.IsAsciiLetter(value[0])) ? value : value[2..];
            if (!TryParseDate(date, out var startMs, out var endMs))
            {
                error = $"'date={value}' is not a FHIR date: give yyyy, yyyy-MM, yyyy-MM-dd or yyyy-MM-ddThh:mm[:ss[.fff]](Z|+hh:mm), with a prefix ge, gt, le, lt or eq.";
                return false;
            }

            switch (prefix)
            {
                case "ge":
                    fromMs = Math.Max(fromMs, startMs);
                    break;
                case "gt":
                    fromMs = Math.Max(fromMs, endMs);
                    break;
                case "le":
                    toMs = Math.Min(toMs, endMs);
                    break;
                case "lt":
                    toMs = Math.Min(toMs, startMs);
                    break;
                case "eq":
                    fromMs = Math.Max(fromMs, startMs);
                    toMs = Math.Min(toMs, endMs);
                    break;
                default:
                    error = $"The date prefix '{prefix}' is not supported here; use ge, gt, le, lt or eq.";
                    return false;
            }
        }

        return true;
    }

    /// <summary>Parses a FHIR date or dateTime into the range it stands for: [start, end) in Unix milliseconds.</summary>
    public static bool TryParseDate(string value, out long startMs, out long endMs)
    {
        startMs = endMs = 0;
        var match = DatePattern().Match(value);
        if (!match.Success)
        {
            return false;
        }

        int Part(string name, int fallback) => match.Groups[name].Success ? int.Parse(match.Groups[name].Value, CultureInfo.InvariantCulture) : fallback;
        try
        {
            var year = Part("y", 1);
            var month = Part("m", 1);
            var day = Part("d", 1);
            var offset = TimeSpan.Zero;
            if (match.Groups["tz"].Success && match.Groups["tz"].Value != "Z")
            {
                // A '+' a client sent unencoded reaches here as a space (a query string decodes '+' so): read as '+'.
                var tz = match.Groups["tz"].Value;
                offset = new TimeSpan(int.Parse(tz[1..3], CultureInfo.InvariantCulture), int.Parse(tz[4..6], CultureInfo.InvariantCulture), 0);
                offset = tz[0] == '-' ? -offset : offset;
            }

            var start = new DateTimeOffset(year, month, day, Part("h", 0), Part("min", 0), Part("s", 0), offset);
            if (match.Groups["f"].Success)
            {
                var fraction = match.Groups["f"].Value;
                start = start.AddTicks((long)(double.Parse("0." + fraction, CultureInfo.InvariantCulture) * TimeSpan.TicksPerSecond));
            }

            var end = !match.Groups["m"].Success ? start.AddYears(1)
                : !match.Groups["d"].Success ? start.AddMonths(1)
                : !match.Groups["h"].Success ? start.AddDays(1)
                : !match.Groups["s"].Success ? start.AddMinutes(1)
                : !match.Groups["f"].Success ? start.AddSeconds(1)
                : start.AddMilliseconds(1);
            startMs = start.ToUnixTimeMilliseconds();
            endMs = end.ToUnixTimeMilliseconds();
            return true;
        }
        catch (ArgumentOutOfRangeException)
        {
            return false;
        }
    }

    /// <summary>Reads a positive whole number parameter, with a default and a ceiling.</summary>
    public static bool TryReadCount(IQueryCollection query, string name, int fallback, int max, out int count, out string? error)
    {
        error = null;
        count = fallback;
        if (query[name].Count == 0)
        {
            return true;
        }

        if (!long.TryParse(query[name].ToString(), NumberStyles.None, CultureInfo.InvariantCulture, out var asked) || (asked > max && max != int.MaxValue))
        {
            error = max == int.MaxValue ? $"'{name}' must be a whole number, 0 or more." : $"'{name}' must be a whole number from 0 to {max}.";
            return false;
        }

        // Without a bound of its own (a page's size or start), a number past what an int holds asks for as much as there is.
        count = (int)Math.Min(asked, max);
        return true;
    }

    [GeneratedRegex(@"^(?<y>\d{4})(-(?<m>\d{2})(-(?<d>\d{2})(T(?<h>\d{2}):(?<min>\d{2})(:(?<s>\d{2})(\.(?<f>\d{1,9}))?)?(?<tz>Z|[+\- ]\d{2}:\d{2})?)?)?)?$", RegexOptions.CultureInvariant)]
    private static partial Regex DatePattern();
}
