using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Options;
using Telemetry.Storage.DuckDb;

namespace Telemetry.Api.Security;

/// <summary>The admin bearer token in force, from configuration or, failing that, from the data folder.</summary>
public sealed partial class AdminToken
{
    public const string FileName = "admin-token";
    public const int MinimumLength = 16;

    /// <summary>Who a request made with the admin token acts as, in what it records (who acknowledged an alert).</summary>
    public const string Principal = "admin";

    private readonly byte[] _hash;

    public AdminToken(IOptions<AuthOptions> auth, IOptions<DuckDbOptions> storage, ILogger<AdminToken> logger)
    {
        // Trimmed, as the file's is: a secret mounted from a file often ends in a newline, which no header carries.
        var token = auth.Value.AdminToken?.Trim();
        if (string.IsNullOrEmpty(token))
        {
            var path = storage.Value.Beside(FileName);
            token = SecretFile.LoadOrCreate(path, static () => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32)));
            LogTokenFile(logger, path);
        }

        if (token.Length < MinimumLength)
        {
            throw new InvalidOperationException(
                $"The admin token must be at least {MinimumLength} characters (Telemetry:Auth:AdminToken or the {FileName} file).");
        }

        if (token.Any(c => char.IsWhiteSpace(c) || char.IsControl(c)))
        {
            throw new InvalidOperationException(
                $"The admin token must not hold spaces or control characters, which a bearer token cannot carry: Telemetry:Auth:AdminToken or the {FileName} file.");
        }

        // A bearer token with two dots is taken for a JWT and checked as one: such an admin token could never sign in.
        if (token.Count(c => c == '.') == 2)
        {
            throw new InvalidOperationException(
                $"The admin token must not hold exactly two '.' (it would be read as a JWT): Telemetry:Auth:AdminToken or the {FileName} file.");
        }

        _hash = SHA256.HashData(Encoding.UTF8.GetBytes(token));
    }

    /// <summary>True when <paramref name="candidate"/> is the admin token; compared in constant time.</summary>
    public bool Matches(string candidate) =>
        CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.UTF8.GetBytes(candidate)), _hash);

    [LoggerMessage(EventId = 4001, Level = LogLevel.Information, Message = "No Telemetry:Auth:AdminToken configured; the admin token is in {Path}")]
    private static partial void LogTokenFile(ILogger logger, string path);
}
