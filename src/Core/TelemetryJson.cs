using System.Text.Json;
using System.Text.Json.Serialization;
using Telemetry.Core.Vitals;

namespace Telemetry.Core;

/// <summary>The one JSON shape of the project's messages (REST, alert events on MQTT, SSE and webhooks, stored alert history).</summary>
public static class TelemetryJson
{
    /// <summary>Web defaults (camelCase), enums as snake_case words, vital kinds as catalogue names.</summary>
    public static JsonSerializerOptions Options { get; } = CreateOptions();

    /// <summary>Adds the project's converters to <paramref name="options"/> (the REST API's options, say).</summary>
    public static void Configure(JsonSerializerOptions options)
    {
        options.Converters.Add(new VitalKindJsonConverter());
        options.Converters.Add(new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower, allowIntegerValues: false));
    }

    private static JsonSerializerOptions CreateOptions()
    {
        var options = new JsonSerializerOptions(JsonSerializerDefaults.Web);
        Configure(options);
        options.MakeReadOnly(populateMissingResolver: true);
        return options;
    }
}
