using Telemetry.Ingest.Grpc;

namespace Telemetry.Ingest.Tests;

public sealed class GrpcStreamRegistryTests
{
    [Fact]
    public void A_devices_new_stream_ends_its_older_one()
    {
        var registry = new GrpcStreamRegistry();
        using var older = registry.Open("watch-1", CancellationToken.None);
        using var newer = registry.Open("watch-1", CancellationToken.None);

        Assert.Equal(GrpcStreamRegistry.StreamEnd.Replaced, older.EndedBy);
        Assert.True(older.Token.IsCancellationRequested);
        Assert.False(newer.Token.IsCancellationRequested);
    }

    [Fact]
    public void A_stream_opened_after_shutdown_began_is_ended_at_once()
    {
        var registry = new GrpcStreamRegistry();
        using var open = registry.Open("watch-1", CancellationToken.None);

        Assert.Equal(1, registry.CloseAll());

        // Its sign-in was under way while the shutdown walked the streams.
        using var late = registry.Open("watch-2", CancellationToken.None);
        Assert.Equal(GrpcStreamRegistry.StreamEnd.ShuttingDown, late.EndedBy);
        Assert.True(late.Token.IsCancellationRequested);
    }
}
