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

    [Fact]
    public void The_port_unset_is_mqtts_own_for_tls_or_not_and_one_set_is_kept()
    {
        Assert.Equal(1883, new ExternalBrokerOptions { Host = "mqtt.internal" }.BrokerPort);
        Assert.Equal(8883, new ExternalBrokerOptions { Host = "mqtt.internal", UseTls = true }.BrokerPort);
        Assert.Equal(1884, new ExternalBrokerOptions { Host = "mqtt.internal", UseTls = true, Port = 1884 }.BrokerPort);
        Assert.Contains(Validate(new ExternalBrokerOptions { Host = "mqtt.internal", ClientId = "telemetry-1", Port = 0 }), error => error.MemberNames.Contains("Port"));
    }

    private static List<ValidationResult> Validate(ExternalBrokerOptions options)
    {
        var results = new List<ValidationResult>();
        Validator.TryValidateObject(options, new ValidationContext(options), results, validateAllProperties: true);
        return results;
    }
}
