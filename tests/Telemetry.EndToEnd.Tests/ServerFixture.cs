namespace Telemetry.EndToEnd.Tests;

/// <summary>One running server shared by the tests of a class.</summary>
public sealed class ServerFixture : IAsyncLifetime
{
    public TelemetryServer Server { get; private set; } = null!;

    public async Task InitializeAsync() => Server = await TelemetryServer.StartNewAsync();

    public async Task DisposeAsync() => await Server.DisposeAsync();
}
