namespace Telemetry.Ingest.Mqtt;

/// <summary>The MQTT topics of the public surface.</summary>
public static class MqttTopics
{
    private const string DevicePrefix = "devices/", VitalsSuffix = "/vitals";
    private const string PatientPrefix = "patients/", AlertsSuffix = "/alerts";

    /// <summary>Where a device publishes its readings.</summary>
    public static string DeviceVitals(string deviceId) => $"{DevicePrefix}{deviceId}{VitalsSuffix}";

    /// <summary>
    /// True when <paramref name="topic"/> is <see cref="DeviceVitals"/> of <paramref name="deviceId"/>, compared in
    /// place: every message is checked, and building the topic to compare cost a string each.
    /// </summary>
    public static bool IsDeviceVitals(string topic, string deviceId) =>
        topic.Length == DevicePrefix.Length + deviceId.Length + VitalsSuffix.Length
        && topic.StartsWith(DevicePrefix, StringComparison.Ordinal)
        && topic.EndsWith(VitalsSuffix, StringComparison.Ordinal)
        && topic.AsSpan(DevicePrefix.Length, deviceId.Length).SequenceEqual(deviceId);

    /// <summary>Every device's readings topic, as a subscription filter.</summary>
    public const string AllDeviceVitals = "devices/+/vitals";

    /// <summary>The device a readings topic names, if it is one with a valid device id.</summary>
    public static bool TryParseDeviceVitals(string topic, out string deviceId)
    {
        deviceId = "";
        if (topic.Length <= DevicePrefix.Length + VitalsSuffix.Length
            || !topic.StartsWith(DevicePrefix, StringComparison.Ordinal)
            || !topic.EndsWith(VitalsSuffix, StringComparison.Ordinal))
        {
            return false;
        }

        var id = topic[DevicePrefix.Length..^VitalsSuffix.Length];
        if (!Core.Identifier.IsValid(id))
        {
            return false;
        }

        deviceId = id;
        return true;
    }

    /// <summary>Where a patient's alerts are published.</summary>
    public static string PatientAlerts(string patientId) => $"{PatientPrefix}{patientId}{AlertsSuffix}";

    /// <summary>The patient an alerts topic (or a filter of one, no wildcards) names, if it is one with a valid patient id.</summary>
    public static string? PatientOfAlerts(string topic)
    {
        if (topic.Length <= PatientPrefix.Length + AlertsSuffix.Length
            || !topic.StartsWith(PatientPrefix, StringComparison.Ordinal)
            || !topic.EndsWith(AlertsSuffix, StringComparison.Ordinal))
        {
            return null;
        }

        var id = topic[PatientPrefix.Length..^AlertsSuffix.Length];
        return Core.Identifier.IsValid(id) ? id : null;
    }
}
