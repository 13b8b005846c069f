namespace Telemetry.Ingest.Mqtt;

/// <summary>The MQTT topics of the public surface.</summary>
public static class MqttTopics
{
    /// <summary>Where a device publishes its readings.</summary>
    public static string DeviceVitals(string deviceId) => $"devices/{deviceId}/vitals";

    /// <summary>True when <paramref name="topic"/> is <see cref="DeviceVitals"/> of <paramref name="deviceId"/>, compared without building it.</summary>
    public static bool IsDeviceVitals(string topic, string deviceId)
    {
        const string Prefix = "devices/", Suffix = "/vitals";
        var rest = topic.AsSpan();
        return rest.Length == Prefix.Length + deviceId.Length + Suffix.Length
            && rest.StartsWith(Prefix, StringComparison.Ordinal)
            && rest.EndsWith(Suffix, StringComparison.Ordinal)
            && rest.Slice(Prefix.Length, deviceId.Length).SequenceEqual(deviceId);
    }

    /// <summary>Every device's readings topic, as a subscription filter.</summary>
    public const string AllDeviceVitals = "devices/+/vitals";

    /// <summary>The device a readings topic names, if it is one with a valid device id.</summary>
    public static bool TryParseDeviceVitals(string topic, out string deviceId)
    {
        deviceId = "";
        const string Prefix = "devices/", Suffix = "/vitals";
        if (topic.Length <= Prefix.Length + Suffix.Length
            || !topic.StartsWith(Prefix, StringComparison.Ordinal)
            || !topic.EndsWith(Suffix, StringComparison.Ordinal))
        {
            return false;
        }

        var id = topic[Prefix.Length..^Suffix.Length];
        if (!Core.Identifier.IsValid(id))
        {
            return false;
        }

        deviceId = id;
        return true;
    }

    /// <summary>Where a patient's alerts are published.</summary>
    public static string PatientAlerts(string patientId) => $"patients/{patientId}/alerts";
}
