using System.Diagnostics.CodeAnalysis;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Telemetry.Core;

namespace Telemetry.Ingest;

/// <summary>
/// Device client certificates (mutual TLS): a certificate identifies a device when it chains to one of the configured
/// authorities, is within its validity period, is meant for client authentication, and its subject has exactly one
/// common name, which is a device id. Only the configured authorities count, never the machine's trust store, and
/// nothing is fetched from the network to build a chain (intermediates belong in the authorities file).
/// </summary>
public sealed class DeviceCertificates
{
    private const string ClientAuthentication = "1.3.6.1.5.5.7.3.2";

    private readonly X509Certificate2Collection _authorities;

    /// <param name="authorities">The certificate authorities that issue device certificates; none turns certificates off.</param>
    public DeviceCertificates(X509Certificate2Collection? authorities = null)
    {
        _authorities = authorities ?? [];
    }

    /// <summary>True when an authority is configured, so the MQTT TLS port asks devices for a certificate.</summary>
    public bool Enabled => _authorities.Count > 0;

    /// <summary>The device <paramref name="certificate"/> names, or the reason it names none.</summary>
    public bool TryIdentify(X509Certificate2 certificate, [NotNullWhen(true)] out string? deviceId, [NotNullWhen(false)] out string? problem)
    {
        deviceId = null;
        if (!Enabled)
        {
            problem = "client certificates are not accepted here";
            return false;
        }

        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(_authorities);
        chain.ChainPolicy.ExtraStore.AddRange(_authorities);
        chain.ChainPolicy.DisableCertificateDownloads = true;
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.ApplicationPolicy.Add(new Oid(ClientAuthentication));
        try
        {
            if (!chain.Build(certificate))
            {
                problem = "certificate not accepted: " + string.Join("; ", chain.ChainStatus.Select(status => status.StatusInformation.Trim()).Distinct());
                return false;
            }
        }
        finally
        {
            foreach (var element in chain.ChainElements)
            {
                if (!ReferenceEquals(element.Certificate, certificate))
                {
                    element.Certificate.Dispose();
                }
            }
        }

        if (CommonName(certificate.SubjectName) is not { } name || !Identifier.IsValid(name))
        {
            problem = "the certificate's subject must hold exactly one common name, a device id";
            return false;
        }

        deviceId = name;
        problem = null;
        return true;
    }

    /// <summary>The subject's one common name; null when it has none, several, or a multi-valued part (never another field in its place).</summary>
    private static string? CommonName(X500DistinguishedName subject)
    {
        const string CommonNameOid = "2.5.4.3";
        string? name = null;
        foreach (var part in subject.EnumerateRelativeDistinguishedNames())
        {
            if (part.HasMultipleElements)
            {
                // A multi-valued part (CN=a+O=b) could hide a second name: device certificates have no need of one.
                return null;
            }

            if (part.GetSingleElementType().Value == CommonNameOid)
            {
                if (name is not null)
                {
                    return null;
                }

                name = part.GetSingleElementValue();
            }
        }

        return name;
    }
}
