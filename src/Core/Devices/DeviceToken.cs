using System.Security.Cryptography;

namespace Telemetry.Core.Devices;

/// <summary>
/// A device's credential as the device holds it: <c>{deviceId}.{secret}</c>, the secret 64 hex digits of randomness.
/// The token names its device, so a gRPC stream can authenticate with the token alone as a bearer token.
/// </summary>
public static class DeviceToken
{
    private const int SecretBytes = 32;

    /// <summary>A new random secret.</summary>
    public static string NewSecret() => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(SecretBytes));

    public static string Format(string deviceId, string secret) => $"{deviceId}.{secret}";

    /// <summary>
    /// True when <paramref name="text"/> may hold a secret: a whole token, or a run of 32 or more hex digits. Text a
    /// device sent where a name belongs (an MQTT username) is logged only when this is false.
    /// </summary>
    public static bool MayHoldSecret(ReadOnlySpan<char> text)
    {
        var run = 0;
        foreach (var c in text)
        {
            run = char.IsAsciiHexDigit(c) ? run + 1 : 0;
            if (run >= SecretBytes)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Splits a token into its device id and secret.</summary>
    public static bool TryParse(ReadOnlySpan<char> token, out string deviceId, out string secret)
    {
        var dot = token.LastIndexOf('.');
        if (dot <= 0 || token.Length - dot - 1 != SecretBytes * 2)
        {
            deviceId = secret = string.Empty;
            return false;
        }

        deviceId = token[..dot].ToString();
        secret = token[(dot + 1)..].ToString();
        return true;
    }
}
