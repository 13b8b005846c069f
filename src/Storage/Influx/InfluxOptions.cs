using System.ComponentModel.DataAnnotations;

namespace Telemetry.Storage.Influx;

/// <summary>
/// The InfluxDB 2 raw store, used when <c>Telemetry:Storage:RawStore</c> is <c>InfluxDb</c>. Bound from
/// <c>Telemetry:Storage:InfluxDb</c>.
/// </summary>
public sealed class InfluxOptions : SeriesServerOptions, IValidatableObject
{
    public const string Section = "Telemetry:Storage:InfluxDb";

    /// <summary>An API token with write and read access to <see cref="Bucket"/>. Never logged.</summary>
    public string Token { get; set; } = "";

    /// <summary>A file holding the token instead (a mounted secret); read once at start-up.</summary>
    public string? TokenFile { get; set; }

    [Required]
    public string Org { get; set; } = "telemetry";

    [Required]
    public string Bucket { get; set; } = "vitals";

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        foreach (var result in ValidateUrl(Section))
        {
            yield return result;
        }

        if (string.IsNullOrEmpty(Token) && string.IsNullOrEmpty(TokenFile))
        {
            yield return new ValidationResult(
                $"{Section}:Token or {Section}:TokenFile must give an API token for the bucket.", [nameof(Token)]);
        }
    }

    /// <summary>
    /// The token, from <see cref="Token"/> or read from <see cref="TokenFile"/>: a file that cannot be read, or holds
    /// nothing, stops the start naming the setting (an empty token would be refused only at the first commit, every
    /// device left without its acks).
    /// </summary>
    public string ResolveToken()
    {
        if (string.IsNullOrEmpty(TokenFile))
        {
            return Token;
        }

        string token;
        try
        {
            token = File.ReadAllText(TokenFile).Trim();
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException)
        {
            throw new InvalidOperationException($"{Section}:TokenFile: {TokenFile} could not be read: {exception.Message}", exception);
        }

        return token.Length > 0 ? token : throw new InvalidOperationException($"{Section}:TokenFile: {TokenFile} is empty; it must hold the bucket's API token.");
    }
}
