using System.ComponentModel.DataAnnotations;

namespace Telemetry.Api.Security;

/// <summary>How people's bearer tokens (JWT) are validated. Bound from <c>Telemetry:Auth:Jwt</c>.</summary>
public sealed class JwtOptions : IValidatableObject
{
    public const string Section = "Telemetry:Auth:Jwt";

    /// <summary>
    /// The OpenID Connect provider that issues tokens (its issuer URL); its signing keys come from its discovery
    /// document. Empty: only development tokens are accepted.
    /// </summary>
    public string? Authority { get; set; }

    /// <summary>The audience tokens must be issued for. Default <c>telemetry</c>.</summary>
    [Required]
    public string Audience { get; set; } = "telemetry";

    /// <summary>Whether the provider's discovery document must be fetched over HTTPS. Default true.</summary>
    public bool RequireHttpsMetadata { get; set; } = true;

    /// <summary>
    /// Whether tokens signed with this server's development key (<c>dotnet run --project src/Api -- token …</c>) are
    /// accepted. Default: only when no <see cref="Authority"/> is configured.
    /// </summary>
    public bool? AcceptDevelopmentTokens { get; set; }

    /// <summary>
    /// The SMART capabilities <c>/fhir/.well-known/smart-configuration</c> claims, for what the provider does (its
    /// launches, its kinds of client). Default: standalone launch, public and confidential (symmetric) clients, and the
    /// patient and user permissions in SMART's v1 and v2 scopes, which this server enforces.
    /// </summary>
    public string[]? SmartCapabilities { get; set; }

    public bool DevelopmentTokensAccepted => AcceptDevelopmentTokens ?? !HasProvider;

    /// <summary>Whether a provider's tokens are accepted (<see cref="Authority"/> is set).</summary>
    public bool HasProvider => !string.IsNullOrWhiteSpace(Authority);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (string.IsNullOrWhiteSpace(Authority))
        {
            yield break;
        }

        if (!Uri.TryCreate(Authority, UriKind.Absolute, out var authority))
        {
            yield return new ValidationResult("Authority must be an absolute URL (the provider's issuer).", [nameof(Authority)]);
        }
        else if (authority.Scheme == Uri.UriSchemeHttp && RequireHttpsMetadata)
        {
            // Accepted, every person's sign-in would fail with 500 at the first token, and SMART's discovery with it.
            yield return new ValidationResult(
                "Authority is http://, and its discovery document must be fetched over HTTPS: give the provider's https:// issuer, or set RequireHttpsMetadata to false (a provider on this machine or a trusted network only).",
                [nameof(Authority)]);
        }
    }
}
