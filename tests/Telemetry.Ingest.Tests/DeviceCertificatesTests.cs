using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Telemetry.Ingest.Tests;

/// <summary>
/// Which client certificates name a device: only ones from a configured authority, valid now, meant for client
/// authentication, with exactly one common name that is a device id. No other subject field stands in for the name.
/// </summary>
public sealed class DeviceCertificatesTests : IDisposable
{
    private static readonly Oid ClientAuthentication = new("1.3.6.1.5.5.7.3.2");
    private static readonly Oid ServerAuthentication = new("1.3.6.1.5.5.7.3.1");

    private readonly X509Certificate2 _authority = Authority("CN=Device CA");
    private readonly X509Certificate2 _stranger = Authority("CN=Another CA");

    public void Dispose()
    {
        _authority.Dispose();
        _stranger.Dispose();
    }

    [Fact]
    public void A_certificate_from_the_authority_names_the_device_in_its_common_name()
    {
        using var certificate = Issue(_authority, "CN=watch-7, O=Acme wearables, OU=ward-3");

        Assert.True(Devices().TryIdentify(certificate, out var deviceId, out _));
        Assert.Equal("watch-7", deviceId);
    }

    [Theory]
    [InlineData("O=watch-7", "exactly one common name")]
    [InlineData("CN=watch-7, CN=watch-8", "exactly one common name")]
    [InlineData("CN=watch-7 + O=Acme", "exactly one common name")]
    [InlineData("CN=not a device id!", "exactly one common name")]
    public void A_subject_without_exactly_one_common_name_that_is_a_device_id_names_no_device(string subject, string problem)
    {
        using var certificate = Issue(_authority, subject);

        Assert.False(Devices().TryIdentify(certificate, out var deviceId, out var reason));
        Assert.Null(deviceId);
        Assert.Contains(problem, reason);
    }

    [Fact]
    public void Expired_foreign_and_server_only_certificates_are_refused()
    {
        using var expired = Issue(_authority, "CN=watch-7", notAfter: DateTimeOffset.UtcNow.AddDays(-1));
        using var foreign = Issue(_stranger, "CN=watch-7");
        using var serverOnly = Issue(_authority, "CN=watch-7", usage: ServerAuthentication);
        var devices = Devices();

        Assert.False(devices.TryIdentify(expired, out _, out var expiredProblem));
        Assert.False(devices.TryIdentify(foreign, out _, out _));
        Assert.False(devices.TryIdentify(serverOnly, out _, out _));
        Assert.Contains("certificate not accepted", expiredProblem);
    }

    [Fact]
    public async Task The_issuer_address_a_certificate_names_is_never_fetched()
    {
        // A client picks that address: fetching it would let anyone on the MQTT port make the server call out.
        var port = FreePort();
        using var issuerSite = new System.Net.HttpListener();
        issuerSite.Prefixes.Add($"http://127.0.0.1:{port}/");
        issuerSite.Start();
        var fetches = 0;
        var serving = Task.Run(async () =>
        {
            while (issuerSite.IsListening)
            {
                try
                {
                    var context = await issuerSite.GetContextAsync();
                    Interlocked.Increment(ref fetches);
                    context.Response.StatusCode = 404;
                    context.Response.Close();
                }
                catch (System.Net.HttpListenerException)
                {
                    return;
                }
                catch (ObjectDisposedException)
                {
                    return;
                }
            }
        });
        using var withIssuerUrl = Issue(_stranger, "CN=watch-7", issuerUrl: $"http://127.0.0.1:{port}/ca.cer");

        Assert.False(Devices().TryIdentify(withIssuerUrl, out _, out _));

        issuerSite.Stop();
        await serving;
        Assert.Equal(0, Volatile.Read(ref fetches));
    }

    [Fact]
    public void Without_authorities_no_certificate_names_a_device()
    {
        using var certificate = Issue(_authority, "CN=watch-7");

        Assert.False(new DeviceCertificates().Enabled);
        Assert.False(new DeviceCertificates().TryIdentify(certificate, out _, out var problem));
        Assert.Contains("not accepted", problem);
    }

    private DeviceCertificates Devices() => new([_authority]);

    private static int FreePort()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static X509Certificate2 Authority(string subject)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign, true));
        return request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-30), DateTimeOffset.UtcNow.AddYears(1));
    }

    private static X509Certificate2 Issue(X509Certificate2 issuer, string subject, DateTimeOffset? notAfter = null, Oid? usage = null, string? issuerUrl = null)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(new X500DistinguishedName(subject), key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([usage ?? ClientAuthentication], false));
        if (issuerUrl is not null)
        {
            request.CertificateExtensions.Add(new X509AuthorityInformationAccessExtension(null, [issuerUrl]));
        }

        var end = notAfter ?? DateTimeOffset.UtcNow.AddDays(30);
        return request.Create(issuer, DateTimeOffset.UtcNow.AddDays(-10), end, RandomNumberGenerator.GetBytes(8));
    }
}
