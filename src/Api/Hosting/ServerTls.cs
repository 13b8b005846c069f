using System.Diagnostics.Metrics;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Telemetry.Ingest;

namespace Telemetry.Api.Hosting;

/// <summary>
/// The server's TLS certificate and the handshake of every TLS listener. The certificate files are read at start (a
/// file that cannot be read stops start-up) and read again when their content changes, so a renewed certificate is
/// served without a restart. The MQTT TLS port asks for device certificates when device authorities are configured.
/// </summary>
public sealed partial class ServerTls
{
    private readonly TlsOptions _options;
    private readonly TimeProvider _timeProvider;
    private readonly ILogger _logger;
    private readonly Lock _reload = new();
    private SslStreamCertificateContext _certificate;
    private byte[] _filesHash;
    private long _checkedAt;

    public ServerTls(TlsOptions options, TimeProvider timeProvider, ILogger logger, IMeterFactory meterFactory)
    {
        _options = options;
        _timeProvider = timeProvider;
        _logger = logger;
        // Loaded first: a file that cannot be used stops start-up with a message naming the setting.
        _certificate = Load(options);
        _filesHash = FilesHash();
        _checkedAt = timeProvider.GetTimestamp();
        meterFactory.Create(IngestInstruments.MeterName).CreateObservableGauge(
            "telemetry.tls.certificate.expiration_timestamp",
            ExpirationTimestampSeconds,
            "s",
            "When the TLS certificate served now ends, in seconds since 1970: alert on it less some days, as renewals fail.");
    }

    /// <summary>
    /// The certificate served now, its files read again first when they changed and <see cref="TlsOptions.ReloadInterval"/>
    /// has passed since they were last looked at (as a handshake does): a renewal is seen with no connection coming.
    /// </summary>
    public X509Certificate2 Certificate => Current().TargetCertificate;

    /// <summary>
    /// What an operator needs to hear of <paramref name="certificate"/> at <paramref name="now"/>: that it has expired
    /// (<c>Ended</c>: TLS clients refuse it), that it ends within <see cref="TlsOptions.ExpiryWarning"/>, or nothing (null).
    /// </summary>
    public (string Problem, bool Ended)? ExpiryProblem(X509Certificate2 certificate, DateTimeOffset now)
    {
        var notAfter = new DateTimeOffset(certificate.NotAfter.ToUniversalTime(), TimeSpan.Zero);
        if (notAfter <= now)
        {
            return ($"the TLS certificate {Printable(certificate.Subject)} expired on {notAfter:u}: devices and browsers refuse it; renew its files (they are read again when they change)", true);
        }

        var left = notAfter - now;
        return left <= _options.ExpiryWarning
            ? ($"the TLS certificate {Printable(certificate.Subject)} expires on {notAfter:u}, in {Spell(left)}: renew its files (they are read again when they change)", false)
            : null;

        static string Spell(TimeSpan left) => left.TotalDays >= 1
            ? Plural((int)left.TotalDays, "day")
            : Plural(Math.Max(1, (int)left.TotalHours), "hour");

        static string Plural(int count, string unit) => count == 1 ? $"1 {unit}" : $"{count} {unit}s";
    }

    /// <summary>The end of the certificate served now, in seconds since 1970 (<c>telemetry_tls_certificate_expiration_timestamp_seconds</c>).</summary>
    public double ExpirationTimestampSeconds() => new DateTimeOffset(Certificate.NotAfter.ToUniversalTime(), TimeSpan.Zero).ToUnixTimeMilliseconds() / 1000.0;

    /// <summary>The authorities of <see cref="TlsOptions.DeviceCertificateAuthorityPath"/>, or none.</summary>
    public static DeviceCertificates LoadDeviceAuthorities(TlsOptions options)
    {
        if (string.IsNullOrWhiteSpace(options.DeviceCertificateAuthorityPath))
        {
            return new DeviceCertificates();
        }

        var authorities = new X509Certificate2Collection();
        try
        {
            authorities.ImportFromPemFile(options.DeviceCertificateAuthorityPath);
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException)
        {
            throw new InvalidOperationException($"{TlsOptions.Section}:DeviceCertificateAuthorityPath: cannot read '{options.DeviceCertificateAuthorityPath}': {exception.Message}", exception);
        }

        if (authorities.Count == 0)
        {
            throw new InvalidOperationException($"{TlsOptions.Section}:DeviceCertificateAuthorityPath: '{options.DeviceCertificateAuthorityPath}' holds no PEM certificate.");
        }

        return new DeviceCertificates(authorities);
    }

    /// <summary>The handshake of the HTTPS port: HTTP/2 (gRPC) or HTTP/1.1 by ALPN, no client certificate.</summary>
    public TlsHandshakeCallbackOptions Https() => new()
    {
        OnConnection = _ => ValueTask.FromResult(new SslServerAuthenticationOptions
        {
            ServerCertificateContext = Current(),
            ApplicationProtocols = [SslApplicationProtocol.Http2, SslApplicationProtocol.Http11],
        }),
    };

    /// <summary>
    /// The handshake of the MQTT TLS port. With device authorities, a client certificate is asked for; one that does not
    /// verify ends the handshake (and is counted), and none at all is fine unless <see cref="TlsOptions.RequireDeviceCertificate"/>.
    /// </summary>
    public TlsHandshakeCallbackOptions Mqtt(DeviceCertificates devices, Action refused) => new()
    {
        OnConnection = connection => ValueTask.FromResult(new SslServerAuthenticationOptions
        {
            ServerCertificateContext = Current(),
            ClientCertificateRequired = devices.Enabled,
            RemoteCertificateValidationCallback = (_, certificate, _, _) =>
            {
                if (!devices.Enabled)
                {
                    return true;
                }

                if (certificate is null)
                {
                    if (_options.RequireDeviceCertificate)
                    {
                        refused();
                        LogDeviceCertificateRefused(_logger, "(none)", "a device certificate is required on this port");
                        return false;
                    }

                    return true;
                }

                using var device = new X509Certificate2(certificate);
                if (devices.TryIdentify(device, out _, out var problem))
                {
                    return true;
                }

                refused();
                LogDeviceCertificateRefused(_logger, Printable(device.Subject), problem);
                return false;
            },
        }),
    };

    private SslStreamCertificateContext Current()
    {
        if (_timeProvider.GetElapsedTime(Interlocked.Read(ref _checkedAt)) < _options.ReloadInterval)
        {
            return _certificate;
        }

        lock (_reload)
        {
            Interlocked.Exchange(ref _checkedAt, _timeProvider.GetTimestamp());
            try
            {
                var hash = FilesHash();
                if (!hash.AsSpan().SequenceEqual(_filesHash))
                {
                    var renewed = Load(_options);
                    if (renewed.TargetCertificate.NotAfter.ToUniversalTime() < _timeProvider.GetUtcNow().UtcDateTime)
                    {
                        throw new InvalidOperationException($"the new certificate expired on {renewed.TargetCertificate.NotAfter.ToUniversalTime():u}");
                    }

                    (_certificate, _filesHash) = (renewed, hash);
                    LogCertificateReloaded(_logger, _certificate.TargetCertificate.Subject, _certificate.TargetCertificate.NotAfter.ToUniversalTime());
                }
            }
            catch (Exception exception) when (exception is InvalidOperationException or IOException or UnauthorizedAccessException)
            {
                // Half-written files during a renewal, or an expired certificate: keep serving the old one and look again later.
                LogCertificateReloadFailed(_logger, exception.Message);
            }

            return _certificate;
        }
    }

    /// <summary>A hash of the certificate and key files' content: renewals are seen whatever their timestamps (a swapped symlink too).</summary>
    private byte[] FilesHash()
    {
        using var hash = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        hash.AppendData(File.ReadAllBytes(_options.CertificatePath!));
        if (!string.IsNullOrWhiteSpace(_options.KeyPath))
        {
            hash.AppendData(File.ReadAllBytes(_options.KeyPath));
        }

        return hash.GetHashAndReset();
    }

    private static SslStreamCertificateContext Load(TlsOptions options)
    {
        var path = options.CertificatePath!;
        try
        {
            if (path.EndsWith(".pfx", StringComparison.OrdinalIgnoreCase) || path.EndsWith(".p12", StringComparison.OrdinalIgnoreCase))
            {
                var bundle = X509CertificateLoader.LoadPkcs12CollectionFromFile(path, options.Password);
                var leaf = bundle.FirstOrDefault(certificate => certificate.HasPrivateKey)
                    ?? throw new InvalidOperationException("it holds no certificate with a private key");
                return SslStreamCertificateContext.Create(leaf, [.. bundle.Where(certificate => !ReferenceEquals(certificate, leaf))]);
            }

            if (string.IsNullOrWhiteSpace(options.KeyPath))
            {
                throw new InvalidOperationException($"a PEM certificate needs its key: set {TlsOptions.Section}:KeyPath");
            }

            var server = string.IsNullOrEmpty(options.Password)
                ? X509Certificate2.CreateFromPemFile(path, options.KeyPath)
                : X509Certificate2.CreateFromEncryptedPemFile(path, options.Password, options.KeyPath);
            var chain = new X509Certificate2Collection();
            chain.ImportFromPemFile(path);
            return SslStreamCertificateContext.Create(server, [.. chain.Skip(1)]);
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException or InvalidOperationException)
        {
            throw new InvalidOperationException($"{TlsOptions.Section}:CertificatePath: cannot use '{path}': {exception.Message}", exception);
        }
    }

    /// <summary>A subject the client chose, made safe to log: printable characters only, at most 200 of them.</summary>
    private static string Printable(string subject)
    {
        var printable = string.Concat(subject.Take(200).Select(c => char.IsControl(c) ? '?' : c));
        return subject.Length > 200 ? printable + "…" : printable;
    }

    [LoggerMessage(EventId = 1501, Level = LogLevel.Information, Message = "TLS certificate reloaded: {Subject}, valid until {NotAfter:u}")]
    private static partial void LogCertificateReloaded(ILogger logger, string subject, DateTime notAfter);

    [LoggerMessage(EventId = 1502, Level = LogLevel.Warning, Message = "The TLS certificate files changed but could not be used; the previous certificate stays: {Reason}")]
    private static partial void LogCertificateReloadFailed(ILogger logger, string reason);

    [LoggerMessage(EventId = 1503, Level = LogLevel.Information, Message = "MQTT TLS connection refused, device certificate {Subject}: {Reason}")]
    private static partial void LogDeviceCertificateRefused(ILogger logger, string subject, string reason);
}
