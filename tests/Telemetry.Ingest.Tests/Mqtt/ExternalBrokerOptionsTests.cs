using System.ComponentModel.DataAnnotations;
using Telemetry.Ingest.Mqtt;
using Xunit;

namespace Telemetry.Ingest.Tests.Mqtt;

public sealed class ExternalBrokerOptionsTests
{
    [Fact]
    public void A_broker_without_a_stable_client_id_is_refused_with_the_reason()
    {
        var errors = Validate(new ExternalBrokerOptions { Host = "mqtt.internal" });

        var error = Assert.Single(errors);
        Assert.Contains("ClientId is required", error.ErrorMessage, StringComparison.Ordinal);
    }

    [Fact]
    public void No_broker_needs_no_client_id_and_a_password_needs_a_user()
    {
        Assert.Empty(Validate(new ExternalBrokerOptions()));
        Assert.Empty(Validate(new ExternalBrokerOptions { Host = "mqtt.internal", ClientId = "telemetry-1", Username = "telemetry", Password = "secret" }));
        Assert.Contains(Validate(new ExternalBrokerOptions { Host = "mqtt.internal", ClientId = "telemetry-1", Password = "secret" }), error => error.MemberNames.Contains("Password"));
        Assert.Contains(Validate(new ExternalBrokerOptions { Host = "mqtt.internal", ClientId = "telemetry-1", SharedGroup = "a/b" }), error => error.MemberNames.Contains("SharedGroup"));
    }

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

    private static List<ValidationResult> Validate(ExternalBrokerOptions options)
    {
        var results = new List<ValidationResult>();
        Validator.TryValidateObject(options, new ValidationContext(options), results, validateAllProperties: true);
        return results;
    }
}
