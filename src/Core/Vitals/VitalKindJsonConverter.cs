using System.Text.Json;
using System.Text.Json.Serialization;

namespace Telemetry.Core.Vitals;

/// <summary>Writes a vital kind as its catalogue name (<c>heart_rate</c>) and reads a name or LOINC code.</summary>
public sealed class VitalKindJsonConverter : JsonConverter<VitalKind>
{
    public override VitalKind Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType == JsonTokenType.String
            && VitalCatalogue.TryFind(reader.ValueIsEscaped ? System.Text.Encoding.UTF8.GetBytes(reader.GetString()!) : reader.ValueSpan, out var definition))
        {
            return definition.Kind;
        }

        throw new JsonException($"Not a vital of the catalogue; expected one of: {string.Join(", ", VitalCatalogue.All.Select(v => v.Name))} (or a LOINC code).");
    }

    public override void Write(Utf8JsonWriter writer, VitalKind value, JsonSerializerOptions options) =>
        writer.WriteStringValue(VitalCatalogue.TryGet(value, out var definition) ? definition.Name : ((byte)value).ToString(System.Globalization.CultureInfo.InvariantCulture));
}
