using Microsoft.Extensions.Diagnostics.HealthChecks;
using Telemetry.Api.Hosting;

namespace Telemetry.Api.Health;

/// <summary>
/// The TLS certificate: <c>Degraded</c> once it ends within <see cref="TlsOptions.ExpiryWarning"/> or has ended (the
/// server stays ready: its plain ports, and every server of a cluster sharing the certificate, would otherwise all be
/// taken out of service at once); healthy otherwise, and without TLS.
/// </summary>
public sealed class CertificateHealthCheck(IServiceProvider services, TimeProvider timeProvider) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        if (services.GetService<ServerTls>() is not { } tls)
        {
            return Task.FromResult(HealthCheckResult.Healthy("no TLS certificate configured"));
        }

        var certificate = tls.Certificate;
        return Task.FromResult(tls.ExpiryProblem(certificate, timeProvider.GetUtcNow()) is { } problem
            ? HealthCheckResult.Degraded(problem.Problem)
            : HealthCheckResult.Healthy($"the TLS certificate is valid until {certificate.NotAfter.ToUniversalTime():u}"));
    }
}
