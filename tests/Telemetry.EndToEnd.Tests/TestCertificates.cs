using System.Net;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Telemetry.EndToEnd.Tests;

/// <summary>
/// Certificates made for one test run, written as PEM files into a folder it owns: an authority, a server certificate for
/// 127.0.0.1 and localhost that it signed, and device client certificates (valid, expired, or from another authority).
/// </summary>
public sealed class TestCertificates : IDisposable
{
    private static readonly Oid ServerAuthentication = new("1.3.6.1.5.5.7.3.1");
    private static readonly Oid ClientAuthentication = new("1.3.6.1.5.5.7.3.2");

    private readonly X509Certificate2 _otherAuthority;
    private readonly string? _keyPassword;
    private readonly string _directory;

    /// <param name="keyPassword">When given, the server's key is written encrypted with it.</param>
    public TestCertificates(string directory, string? keyPassword = null)
    {
        _keyPassword = keyPassword;
        _directory = directory;
        Directory.CreateDirectory(directory);
        Authority = CreateAuthority("Telemetry Test Devices CA");
        _otherAuthority = CreateAuthority("Somebody Else's CA");
        AuthorityPath = Path.Combine(directory, "device-ca.pem");
        File.WriteAllText(AuthorityPath, Authority.ExportCertificatePem());
        ServerCertificatePath = Path.Combine(directory, "server.pem");
        ServerKeyPath = Path.Combine(directory, "server.key");
        RenewServerCertificate();
    }

    /// <summary>The authority that signs the server certificate and the devices' certificates.</summary>
    public X509Certificate2 Authority { get; }

    public string AuthorityPath { get; }

    public string ServerCertificatePath { get; }

    public string ServerKeyPath { get; }

    /// <summary>
    /// Writes a new server certificate and key over the old files, as a renewal would; returns its serial number. It is
    /// valid for <paramref name="validFor"/> from now (30 days unless given).
    /// </summary>
    public string RenewServerCertificate(TimeSpan? validFor = null)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256);
        var names = new SubjectAlternativeNameBuilder();
        names.AddDnsName("localhost");
        names.AddIpAddress(IPAddress.Loopback);
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([ServerAuthentication], critical: false));
        using var server = request.Create(Authority, DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow + (validFor ?? TimeSpan.FromDays(30)), Serial());
        File.WriteAllText(ServerCertificatePath, server.ExportCertificatePem());
        File.WriteAllText(ServerKeyPath, _keyPassword is null
            ? key.ExportPkcs8PrivateKeyPem()
            : key.ExportEncryptedPkcs8PrivateKeyPem(_keyPassword, new PbeParameters(PbeEncryptionAlgorithm.Aes256Cbc, HashAlgorithmName.SHA256, 100_000)));
        return server.SerialNumber;
    }

    /// <summary>A client certificate whose subject names <paramref name="deviceId"/>, with its private key.</summary>
    public X509Certificate2 Device(string deviceId, bool expired = false, bool fromOtherAuthority = false)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={deviceId}, O=Telemetry test devices", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([ClientAuthentication], critical: false));
        var (notBefore, notAfter) = expired
            ? (DateTimeOffset.UtcNow.AddDays(-10), DateTimeOffset.UtcNow.AddDays(-1))
            : (DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
        using var issued = request.Create(fromOtherAuthority ? _otherAuthority : Authority, notBefore, notAfter, Serial());
        using var withKey = issued.CopyWithPrivateKey(key);
        return X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), password: null);
    }

    /// <summary>True when <paramref name="certificate"/> (the server's) chains to <see cref="Authority"/>.</summary>
    public bool Trusts(X509Certificate? certificate)
    {
        if (certificate is null)
        {
            return false;
        }

        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(Authority);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        return chain.Build(certificate as X509Certificate2 ?? new X509Certificate2(certificate));
    }

    /// <summary>A device on an MQTT TLS port, trusting the test authority, with a client certificate when given.</summary>
    public MQTTnet.MqttClientOptions MqttOverTls(int port, string clientId, string? user, string? password, X509Certificate2? certificate = null) =>
        Devices.MqttOptions(port, clientId, user, password)
            .WithTlsOptions(tls =>
            {
                tls.UseTls().WithCertificateValidationHandler(args => Trusts(args.Certificate));
                if (certificate is not null)
                {
                    tls.WithClientCertificates([certificate]);
                }
            })
            .Build();

    /// <summary>An HTTP handler that trusts the test authority (and nothing else) for the server's certificate.</summary>
    public HttpMessageHandler Handler() => new SocketsHttpHandler
    {
        SslOptions = new SslClientAuthenticationOptions { RemoteCertificateValidationCallback = (_, certificate, _, _) => Trusts(certificate) },
    };

    /// <summary>Disposes the authorities and deletes the folder of PEM files.</summary>
    public void Dispose()
    {
        Authority.Dispose();
        _otherAuthority.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    private static X509Certificate2 CreateAuthority(string name)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(certificateAuthority: true, hasPathLengthConstraint: true, pathLengthConstraint: 1, critical: true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, critical: true));
        return request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-30), DateTimeOffset.UtcNow.AddYears(1));
    }

    private static byte[] Serial() => RandomNumberGenerator.GetBytes(12);
}
