using System.Collections.Concurrent;

namespace Telemetry.Ingest.Grpc;

/// <summary>
/// One ingest stream per device, as one MQTT session per device: a device's new stream ends its older one (a phone
/// that reconnected after a drop), so two streams never interleave one device's batches.
/// </summary>
public sealed class GrpcStreamRegistry
{
    private readonly ConcurrentDictionary<string, CancellationTokenSource> _streams = new(StringComparer.Ordinal);

    /// <summary>Registers a new stream for the device, ending its previous one. Dispose the result when the stream ends.</summary>
    public Registration Open(string deviceId, CancellationToken callEnded)
    {
        var stream = CancellationTokenSource.CreateLinkedTokenSource(callEnded);
        CancellationTokenSource? previous = null;
        _streams.AddOrUpdate(deviceId, stream, (_, older) =>
        {
            previous = older;
            return stream;
        });
        try
        {
            previous?.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // The older stream ended on its own meanwhile.
        }

        return new Registration(this, deviceId, stream);
    }

    /// <summary>A stream's place in the registry; its token is cancelled when a newer stream of the device opens.</summary>
    public sealed class Registration(GrpcStreamRegistry registry, string deviceId, CancellationTokenSource stream) : IDisposable
    {
        public CancellationToken Token => stream.Token;

        /// <summary>True when this stream ended because the device opened a newer one.</summary>
        public bool Replaced => stream.IsCancellationRequested && (!registry._streams.TryGetValue(deviceId, out var current) || !ReferenceEquals(current, stream));

        public void Dispose()
        {
            registry._streams.TryRemove(new KeyValuePair<string, CancellationTokenSource>(deviceId, stream));
            stream.Dispose();
        }
    }
}
