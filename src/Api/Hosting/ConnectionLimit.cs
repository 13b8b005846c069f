using System.Diagnostics.Metrics;
using Microsoft.AspNetCore.Connections;
using Telemetry.Ingest;

namespace Telemetry.Api.Hosting;

/// <summary>
/// The connections the server holds at once over every listener (<see cref="ServerOptions.MaxConnections"/>): Kestrel's
/// own limit counts each listener apart, so five listeners would hold five times as many, and the open-file limit an
/// operator sets for the one figure would run out first (a database file, the next day's audit file, unopened). Every
/// connection counts from its accept to its close, a WebSocket's too; one beyond the limit is closed at once, before
/// TLS or any protocol, and counted in <c>telemetry_connections_rejected_total</c>.
/// </summary>
public sealed class ConnectionLimit
{
    private readonly int _limit;
    private readonly Counter<long> _rejected;
    private int _held;

    public ConnectionLimit(int limit, IMeterFactory meterFactory)
    {
        _limit = limit;
        _rejected = meterFactory.Create(IngestInstruments.MeterName)
            .CreateCounter<long>("telemetry.connections.rejected", "{connection}", "Connections closed as they came because the server held its limit of connections over every listener.");
    }

    /// <summary>The middleware every listener runs first.</summary>
    public ConnectionDelegate Wrap(ConnectionDelegate next) => async connection =>
    {
        if (Interlocked.Increment(ref _held) > _limit)
        {
            Interlocked.Decrement(ref _held);
            _rejected.Add(1);
            await connection.DisposeAsync();
            return;
        }

        try
        {
            await next(connection);
        }
        finally
        {
            Interlocked.Decrement(ref _held);
        }
    };
}
