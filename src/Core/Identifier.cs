namespace Telemetry.Core;

/// <summary>The shape of device and patient ids: safe in MQTT topics, URLs and logs.</summary>
public static class Identifier
{
    public const int MaxLength = 128;

    /// <summary>What a valid id looks like, in the words a refusal uses.</summary>
    public const string Shape = "1 to 128 characters of letters, digits and - _ : .";

    /// <summary>1 to 128 characters of ASCII letters, digits and <c>- _ : .</c></summary>
    public static bool IsValid(ReadOnlySpan<char> id)
    {
        if (id.IsEmpty || id.Length > MaxLength)
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
}
