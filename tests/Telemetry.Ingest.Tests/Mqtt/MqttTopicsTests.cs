using Telemetry.Ingest.Mqtt;
using Xunit;

namespace Telemetry.Ingest.Tests.Mqtt;

public sealed class MqttTopicsTests
{
    [Theory]
    [InlineData("devices/watch-1/vitals", "watch-1")]
    [InlineData("devices/a.b:c_d-e/vitals", "a.b:c_d-e")]
    [InlineData("devices//vitals", null)]
    [InlineData("devices/watch 1/vitals", null)]
    [InlineData("devices/watch-1/vitals/extra", null)]
    [InlineData("patients/p-1/alerts", null)]
    public void Only_a_device_readings_topic_names_a_device(string topic, string? deviceId)
    {
        Assert.Equal(deviceId is not null, MqttTopics.TryParseDeviceVitals(topic, out var parsed));
        Assert.Equal(deviceId ?? "", parsed);
    }

    [Theory]
    [InlineData("devices/watch-1/vitals", true)]
    [InlineData("devices/watch-2/vitals", false)]
    [InlineData("devices/watch-10/vitals", false)]
    [InlineData("devices/watch-/vitals", false)]
    [InlineData("devices/watch-1/vitals/extra", false)]
    [InlineData("device/watch-1/vitals/", false)]
    [InlineData("patients/watch-1/vitals", false)]
    [InlineData("", false)]
    public void A_device_publishes_only_to_its_own_readings_topic(string topic, bool own)
    {
        Assert.Equal(own, MqttTopics.IsDeviceVitals(topic, "watch-1"));
        Assert.Equal(topic == MqttTopics.DeviceVitals("watch-1"), MqttTopics.IsDeviceVitals(topic, "watch-1"));
    }
}
