namespace Telemetry.EndToEnd.Tests;

/// <summary>A server with a certificate and its plain ports turned off, and the test authority for device certificates.</summary>
public sealed class TlsFixture : IAsyncLifetime
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "telemetry-tls-" + Guid.NewGuid().ToString("N"));

    public TestCertificates Certificates { get; private set; } = null!;

    public TelemetryServer Server { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Certificates = new TestCertificates(_directory);
        Server = new TelemetryServer(new Dictionary<string, string>
        {
            ["Telemetry__Server__Tls__ReloadInterval"] = "00:00:01",
            ["Telemetry__Health__Period"] = "00:00:01",
            ["Telemetry__Health__Delay"] = "00:00:01",
        }, Certificates);
        await Server.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await Server.DisposeAsync();
        Certificates.Dispose();
    }
}
