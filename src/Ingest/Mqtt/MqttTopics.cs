namespace Telemetry.Ingest.Mqtt;

/// <summary>The MQTT topics of the public surface.</summary>
public static class MqttTopics
{
    /// <summary>Where a device publishes its readings.</summary>
    public static string DeviceVitals(string deviceId) => $"devices/{deviceId}/vitals";

    /// <summary>Where a patient's alerts are published.</summary>
    public static string PatientAlerts(string patientId) => $"patients/{patientId}/alerts";
}
