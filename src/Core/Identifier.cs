namespace Telemetry.Core;

/// <summary>The shape of device and patient ids: safe in MQTT topics, URLs and logs.</summary>
public static class Identifier
{
    public const int MaxLength = 128;

    /// <summary>What a valid id looks like, in the words a refusal uses.</summary>
    public const string Shape = "1 to 128 characters of letters, digits and - _ : . (not . or .. alone)";

    /// <summary>1 to 128 characters of ASCII letters, digits and <c>- _ : .</c>, but not <c>.</c> or <c>..</c> (a URL's path would read them as a step).</summary>
    public static bool IsValid(ReadOnlySpan<char> id)
    {
        if (id.IsEmpty || id.Length > MaxLength || id is "." or "..")
        {
            return false;
        }

        foreach (var c in id)
        {
            if (!char.IsAsciiLetterOrDigit(c) && c is not ('-' or '_' or ':' or '.'))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>The longest patient id: a FHIR id's.</summary>
    public const int MaxPatientIdLength = 64;

    /// <summary>What a valid patient id looks like, in the words a refusal uses.</summary>
    public const string PatientShape = "1 to 64 characters of letters, digits, - and . (a FHIR id, such as the EMR's Patient id)";

    /// <summary>
    /// A patient id as a new binding or care team may name it: a FHIR id (1 to 64 ASCII letters, digits, <c>-</c> and
    /// <c>.</c>), so that it is the EMR's Patient id and <c>Patient/{id}</c> is a valid reference. Narrower than
    /// <see cref="IsValid"/>, which reads still take.
    /// </summary>
    public static bool IsValidPatientId(ReadOnlySpan<char> id) =>
        id.Length <= MaxPatientIdLength && IsValid(id) && !id.ContainsAny('_', ':');
}
