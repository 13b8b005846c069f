using System.ComponentModel.DataAnnotations;

namespace Telemetry.Api.Hosting;

/// <summary>
/// TLS for every front door, bound from <c>Telemetry:Server:Tls</c>. With a certificate configured the server also
/// listens on <see cref="ServerOptions.HttpsPort"/> (HTTPS and gRPC over TLS) and <see cref="ServerOptions.MqttTlsPort"/>
/// (MQTT over TLS); the plain ports stay until they are set to 0.
/// </summary>
public sealed class TlsOptions : IValidatableObject
{
    public const string Section = "Telemetry:Server:Tls";

    /// <summary>The server certificate: a PEM file (the certificate, then any intermediates) or a PKCS#12 file (.pfx, .p12).</summary>
    public string? CertificatePath { get; set; }

    /// <summary>The PEM private key of <see cref="CertificatePath"/>; not used for a PKCS#12 file.</summary>
    public string? KeyPath { get; set; }

    /// <summary>The password of an encrypted PEM key or a PKCS#12 file. Never logged.</summary>
    public string? Password { get; set; }

    /// <summary>
    /// A PEM file of the certificate authorities that issue device certificates. When set, the MQTT TLS port asks
    /// devices for a client certificate, and one whose subject common name is a provisioned device signs it in.
    /// </summary>
    public string? DeviceCertificateAuthorityPath { get; set; }

    /// <summary>Refuse TLS connections on the MQTT TLS port that bring no device certificate (token sign-in then needs the plain port).</summary>
    public bool RequireDeviceCertificate { get; set; }

    /// <summary>How often the certificate files are checked for a renewed certificate.</summary>
    public TimeSpan ReloadInterval { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>
    /// How long before the certificate's end <c>/healthz</c> reports it <c>Degraded</c> (and the start-up log warns), so
    /// that a renewal that did not happen is seen before devices and browsers refuse the server.
    /// </summary>
    public TimeSpan ExpiryWarning { get; set; } = TimeSpan.FromDays(14);

    public bool Enabled => !string.IsNullOrWhiteSpace(CertificatePath);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (!Enabled && !string.IsNullOrWhiteSpace(DeviceCertificateAuthorityPath))
        {
            yield return new ValidationResult("DeviceCertificateAuthorityPath needs a server certificate: set CertificatePath too.", [nameof(DeviceCertificateAuthorityPath)]);
        }

        if (RequireDeviceCertificate && string.IsNullOrWhiteSpace(DeviceCertificateAuthorityPath))
        {
            yield return new ValidationResult("RequireDeviceCertificate needs DeviceCertificateAuthorityPath: without authorities no device certificate can be accepted.", [nameof(RequireDeviceCertificate)]);
        }

        if (ExpiryWarning < TimeSpan.Zero)
        {
            yield return new ValidationResult("ExpiryWarning must not be negative.", [nameof(ExpiryWarning)]);
        }

        if (ReloadInterval <= TimeSpan.Zero)
        {
            yield return new ValidationResult("ReloadInterval must be positive.", [nameof(ReloadInterval)]);
        }
    }
}
