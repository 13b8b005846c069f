using System.Collections.Concurrent;

namespace Telemetry.Ingest.Grpc;

/// <summary>
/// One ingest stream per device, as one MQTT session per device: a device's new stream ends its older one (a phone
/// that reconnected after a drop), so two streams never interleave one device's batches. A device whose token is
/// rotated or revoked has its stream ended too.
/// </summary>
public sealed class GrpcStreamRegistry
{
    private readonly ConcurrentDictionary<string, Registration> _streams = new(StringComparer.Ordinal);
    private volatile bool _shuttingDown;

    /// <summary>True once the server is shutting down: new streams are refused.</summary>
    public bool IsShuttingDown => _shuttingDown;

    /// <summary>Registers a new stream for the device, ending its previous one. Dispose the result when the stream ends.</summary>
    public Registration Open(string deviceId, CancellationToken callEnded)
    {
        var stream = new Registration(this, deviceId, CancellationTokenSource.CreateLinkedTokenSource(callEnded));
        Registration? previous = null;
        _streams.AddOrUpdate(deviceId, stream, (_, older) =>
        {
            previous = older;
            return stream;
        });
        previous?.End(StreamEnd.Replaced);

        // Opened after the shutdown's walk over the streams (its sign-in was under way): ended as they were.
        if (_shuttingDown)
        {
            stream.End(StreamEnd.ShuttingDown);
        }

        return stream;
    }

    /// <summary>Ends the device's stream, if it has one, because its credentials changed; false when it had none.</summary>
    public bool Close(string deviceId)
    {
        if (!_streams.TryGetValue(deviceId, out var stream))
        {
            return false;
        }

        stream.End(StreamEnd.CredentialsChanged);
        return true;
    }

    /// <summary>Ends every stream because the server is shutting down (each still acks what it took); returns how many.</summary>
    public int CloseAll()
    {
        _shuttingDown = true;
        var ended = 0;
        foreach (var stream in _streams.Values)
        {
            stream.End(StreamEnd.ShuttingDown);
            ended++;
        }

        return ended;
    }

    /// <summary>Why a stream was ended from outside the call.</summary>
    public enum StreamEnd
    {
        None,
        Replaced,
        CredentialsChanged,
        ShuttingDown,
    }

    /// <summary>A stream's place in the registry; its token is cancelled when a newer stream of the device opens or its credentials change.</summary>
    public sealed class Registration(GrpcStreamRegistry registry, string deviceId, CancellationTokenSource stream) : IDisposable
    {
        private int _end;

        public CancellationToken Token => stream.Token;

        /// <summary>Why the registry ended this stream; <see cref="StreamEnd.None"/> while it has not.</summary>
        public StreamEnd EndedBy => (StreamEnd)Volatile.Read(ref _end);

        internal void End(StreamEnd reason)
        {
            Interlocked.CompareExchange(ref _end, (int)reason, (int)StreamEnd.None);
            try
            {
                stream.Cancel();
            }
            catch (ObjectDisposedException)
            {
                // The stream ended on its own meanwhile.
            }
        }

        public void Dispose()
        {
            registry._streams.TryRemove(new KeyValuePair<string, Registration>(deviceId, this));
            stream.Dispose();
        }
    }
}
