using System.Security.Claims;
using System.Security.Cryptography;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using Telemetry.Storage.DuckDb;

namespace Telemetry.Api.Security;

/// <summary>
/// Signed tokens for local use, so people's roles can be tried without an identity provider. The signing key is
/// made at first start and kept beside the database (owner-only), like the admin token; it is never logged.
/// </summary>
public sealed class DevelopmentTokens
{
    public const string Issuer = "telemetry-development";
    public const string FileName = "development-signing-key";

    public DevelopmentTokens(IOptions<DuckDbOptions> storage, IOptions<JwtOptions> jwt)
    {
        KeyPath = storage.Value.Beside(FileName);
        KeyMadeNow = !File.Exists(KeyPath);
        var secret = SecretFile.LoadOrCreate(KeyPath, static () => Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)));
        SigningKey = new SymmetricSecurityKey(Convert.FromBase64String(secret)) { KeyId = "development" };
        Audience = jwt.Value.Audience;
    }

    public SecurityKey SigningKey { get; }

    /// <summary>Where the signing key is kept.</summary>
    public string KeyPath { get; }

    /// <summary>Whether there was no key there, and this one was made now.</summary>
    public bool KeyMadeNow { get; }

    public string Audience { get; }

    /// <summary>A token for <paramref name="subject"/> in <paramref name="role"/>, valid for <paramref name="lifetime"/>.</summary>
    public string Mint(string subject, string role, IEnumerable<string> patients, IEnumerable<string> careTeams, string? scope, TimeSpan lifetime, TimeProvider timeProvider)
    {
        var claims = new List<Claim> { new(TelemetryClaims.Subject, subject), new(TelemetryClaims.Role, role) };
        claims.AddRange(patients.Select(patient => new Claim(TelemetryClaims.Patient, patient)));
        claims.AddRange(careTeams.Select(team => new Claim(TelemetryClaims.CareTeam, team)));
        if (!string.IsNullOrWhiteSpace(scope))
        {
            claims.Add(new Claim(TelemetryClaims.Scope, scope));
        }

        var now = timeProvider.GetUtcNow().UtcDateTime;
        return new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Issuer = Issuer,
            Audience = Audience,
            Subject = new ClaimsIdentity(claims),
            IssuedAt = now,
            NotBefore = now,
            Expires = now + lifetime,
            SigningCredentials = new SigningCredentials(SigningKey, SecurityAlgorithms.HmacSha256),
        });
    }
}
