namespace Telemetry.Core.Vitals;

/// <summary>LOINC codes: digits, a hyphen and a Mod 10 check digit, as LOINC defines them.</summary>
public static class Loinc
{
    /// <summary>True when <paramref name="code"/> is shaped like a LOINC code and its check digit is right.</summary>
    public static bool IsValid(ReadOnlySpan<char> code)
    {
        var hyphen = code.IndexOf('-');
        if (hyphen <= 0 || hyphen > 7 || hyphen != code.Length - 2 || !char.IsAsciiDigit(code[^1]))
        {
            return false;
        }

        var number = code[..hyphen];
        foreach (var c in number)
        {
            if (!char.IsAsciiDigit(c))
            {
                return false;
            }
        }

        return CheckDigit(number) == code[^1] - '0';
    }

    /// <summary>
    /// LOINC's Mod 10: the digits in odd places counted from the right, as a number, doubled; the digits in even places
    /// written before it; the check digit brings the sum of all those digits up to a multiple of ten.
    /// </summary>
    private static int CheckDigit(ReadOnlySpan<char> number)
    {
        var odd = 0L;
        var even = new System.Text.StringBuilder();
        for (var i = 0; i < number.Length; i++)
        {
            var positionFromRight = number.Length - i;
            if (positionFromRight % 2 == 1)
            {
                odd = (odd * 10) + (number[i] - '0');
            }
            else
            {
                even.Append(number[i]);
            }
        }

        var sum = 0;
        foreach (var c in even.Append(odd * 2).ToString())
        {
            sum += c - '0';
        }

        return (10 - (sum % 10)) % 10;
    }
}
