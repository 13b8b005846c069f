using System.Globalization;

namespace Telemetry.Core.Alerts;

/// <summary>Alert ids name the patient, so an acknowledgement finds the patient's grain without a lookup: <c>{patientId}~{number}</c>.</summary>
public static class AlertIds
{
    public const char Separator = '~';

    public static string Format(string patientId, long number) => string.Create(CultureInfo.InvariantCulture, $"{patientId}{Separator}{number}");

    public static bool TryParse(string? alertId, out string patientId, out long number)
    {
        patientId = string.Empty;
        number = 0;
        var at = alertId?.LastIndexOf(Separator) ?? -1;
        if (at <= 0
            || !Identifier.IsValid(alertId.AsSpan(0, at))
            || !long.TryParse(alertId.AsSpan(at + 1), NumberStyles.None, CultureInfo.InvariantCulture, out number)
            || number <= 0)
        {
            return false;
        }

        patientId = alertId![..at];
        return true;
    }
}
