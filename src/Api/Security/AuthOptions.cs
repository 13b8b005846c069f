namespace Telemetry.Api.Security;

/// <summary>Credentials for people and tools using the REST API. Bound from <c>Telemetry:Auth</c>.</summary>
public sealed class AuthOptions
{
    public const string Section = "Telemetry:Auth";

    /// <summary>
    /// The admin bearer token. When empty, the server makes one at first start and keeps it in
    /// <c>admin-token</c> beside the database (readable by the owner only); it is never logged.
    /// </summary>
    public string? AdminToken { get; set; }

    /// <summary>
    /// How often a live or alert stream asks again whom its reader may see (a care team changed): patients no longer
    /// readable leave it, new ones join it (and are audited), a one-patient alert stream ends with <c>revoked</c>.
    /// </summary>
    [System.ComponentModel.DataAnnotations.Range(1, 3600)]
    public int StreamAccessCheckSeconds { get; set; } = 30;
}
