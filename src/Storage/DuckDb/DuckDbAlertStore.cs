using System.Text.Json;
using DuckDB.NET.Data;
using Telemetry.Core;
using Telemetry.Core.Alerts;
using Telemetry.Core.Storage;

namespace Telemetry.Storage.DuckDb;

/// <summary>
/// Alert history in the embedded DuckDB file: the event log (positions in commit order, so a consumer that reads
/// "after position N" never skips one) and each alert as it stands, updated in the same transaction.
/// </summary>
public sealed class DuckDbAlertStore(DuckDbDatabase database) : IAlertStore
{
    // Appends are serialised: a position is handed out and committed before the next, so readers see no gaps fill in later.
    private readonly SemaphoreSlim _appendLock = new(1, 1);
    private long _lastPosition = -1;

    public async Task<IReadOnlyList<AlertEvent>> AppendAsync(IReadOnlyList<AlertEvent> events, CancellationToken cancellationToken = default)
    {
        if (events.Count == 0)
        {
            return [];
        }

        await _appendLock.WaitAsync(cancellationToken);
        try
        {
            return await Task.Run(() => Append(events), cancellationToken);
        }
        finally
        {
            _appendLock.Release();
        }
    }

    public Task<IReadOnlyList<AlertEvent>> ReadEventsAsync(long afterPosition, string? patientId, int limit, CancellationToken cancellationToken = default) =>
        Task.Run<IReadOnlyList<AlertEvent>>(() =>
        {
            using var connection = database.OpenConnection();
            using var command = connection.CreateCommand();
            command.CommandText = patientId is null
                ? "SELECT position, event FROM alert_events WHERE position > $1 ORDER BY position LIMIT $2"
                : "SELECT position, event FROM alert_events WHERE position > $1 AND patient_id = $3 ORDER BY position LIMIT $2";
            command.Parameters.Add(new DuckDBParameter(afterPosition));
            command.Parameters.Add(new DuckDBParameter(limit));
            if (patientId is not null)
            {
                command.Parameters.Add(new DuckDBParameter(patientId));
            }

            using var reader = command.ExecuteReader();
            var events = new List<AlertEvent>();
            while (reader.Read())
            {
                events.Add(JsonSerializer.Deserialize<AlertEvent>(reader.GetString(1), TelemetryJson.Options)! with { Position = reader.GetInt64(0) });
            }

            return events;
        }, cancellationToken);

    public Task<long> LastPositionAsync(CancellationToken cancellationToken = default) => Task.Run(() =>
    {
        using var connection = database.OpenConnection();
        return LastPosition(connection);
    }, cancellationToken);

    public Task<IReadOnlyList<Alert>> QueryAsync(AlertQuery query, CancellationToken cancellationToken = default) =>
        Task.Run<IReadOnlyList<Alert>>(() =>
        {
            using var connection = database.OpenConnection();
            using var command = connection.CreateCommand();
            var where = new List<string>();
            if (query.PatientId is not null)
            {
                command.Parameters.Add(new DuckDBParameter("patient", query.PatientId));
                where.Add("patient_id = $patient");
            }

            if (query.From is { } from)
            {
                command.Parameters.Add(new DuckDBParameter("from", from.UtcDateTime));
                where.Add("raised_at >= $from");
            }

            if (query.To is { } to)
            {
                command.Parameters.Add(new DuckDBParameter("to", to.UtcDateTime));
                where.Add("raised_at < $to");
            }

            if (query.OpenOnly)
            {
                where.Add("is_open");
            }

            command.Parameters.Add(new DuckDBParameter("limit", query.Limit));
            command.CommandText = "SELECT alert FROM alerts"
                + (where.Count > 0 ? " WHERE " + string.Join(" AND ", where) : string.Empty)
                + " ORDER BY raised_at DESC, alert_id DESC LIMIT $limit";
            using var reader = command.ExecuteReader();
            var alerts = new List<Alert>();
            while (reader.Read())
            {
                alerts.Add(JsonSerializer.Deserialize<Alert>(reader.GetString(0), TelemetryJson.Options)!);
            }

            return alerts;
        }, cancellationToken);

    public Task<Alert?> GetAsync(string alertId, CancellationToken cancellationToken = default) => Task.Run(() =>
    {
        using var connection = database.OpenConnection();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT alert FROM alerts WHERE alert_id = $1";
        command.Parameters.Add(new DuckDBParameter(alertId));
        return command.ExecuteScalar() is string json ? JsonSerializer.Deserialize<Alert>(json, TelemetryJson.Options) : null;
    }, cancellationToken);

    public Task SetWatchedAsync(string patientId, bool watched, CancellationToken cancellationToken = default) => Task.Run(() =>
    {
        using var connection = database.OpenConnection();
        using var command = connection.CreateCommand();
        command.CommandText = watched
            ? "INSERT OR IGNORE INTO alert_patients VALUES ($1)"
            : "DELETE FROM alert_patients WHERE patient_id = $1";
        command.Parameters.Add(new DuckDBParameter(patientId));
        command.ExecuteNonQuery();
    }, cancellationToken);

    public Task<IReadOnlyList<string>> WatchedPatientsAsync(CancellationToken cancellationToken = default) =>
        Task.Run<IReadOnlyList<string>>(() =>
        {
            using var connection = database.OpenConnection();
            using var command = connection.CreateCommand();
            command.CommandText = "SELECT patient_id FROM alert_patients ORDER BY patient_id";
            using var reader = command.ExecuteReader();
            var patients = new List<string>();
            while (reader.Read())
            {
                patients.Add(reader.GetString(0));
            }

            return patients;
        }, cancellationToken);

    public Task<long> ReadCursorAsync(string consumer, CancellationToken cancellationToken = default) => Task.Run(() =>
    {
        using var connection = database.OpenConnection();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT position FROM alert_cursors WHERE consumer = $1";
        command.Parameters.Add(new DuckDBParameter(consumer));
        return command.ExecuteScalar() is long position ? position : 0L;
    }, cancellationToken);

    public Task WriteCursorAsync(string consumer, long position, CancellationToken cancellationToken = default) => Task.Run(() =>
    {
        using var connection = database.OpenConnection();
        using var command = connection.CreateCommand();
        command.CommandText = "INSERT OR REPLACE INTO alert_cursors VALUES ($1, $2)";
        command.Parameters.Add(new DuckDBParameter(consumer));
        command.Parameters.Add(new DuckDBParameter(position));
        command.ExecuteNonQuery();
    }, cancellationToken);

    private List<AlertEvent> Append(IReadOnlyList<AlertEvent> events)
    {
        using var connection = database.OpenConnection();
        if (_lastPosition < 0)
        {
            _lastPosition = LastPosition(connection);
        }

        var stored = new List<AlertEvent>(events.Count);
        var next = _lastPosition;
        using var transaction = connection.BeginTransaction();
        foreach (var item in events)
        {
            // An event handed over again (a grain's outbox after a crash) keeps the position it was stored with.
            using var existing = connection.CreateCommand();
            existing.CommandText = "SELECT position FROM alert_events WHERE patient_id = $1 AND seq = $2";
            existing.Parameters.Add(new DuckDBParameter(item.PatientId));
            existing.Parameters.Add(new DuckDBParameter(item.Seq));
            if (existing.ExecuteScalar() is long position)
            {
                stored.Add(item with { Position = position });
                continue;
            }

            var positioned = item with { Position = ++next };
            using var insert = connection.CreateCommand();
            insert.CommandText = "INSERT INTO alert_events VALUES ($1, $2, $3, $4, $5, $6, $7)";
            insert.Parameters.Add(new DuckDBParameter(positioned.Position));
            insert.Parameters.Add(new DuckDBParameter(item.PatientId));
            insert.Parameters.Add(new DuckDBParameter(item.Seq));
            insert.Parameters.Add(new DuckDBParameter(item.Alert.AlertId));
            insert.Parameters.Add(new DuckDBParameter((byte)item.Type));
            insert.Parameters.Add(new DuckDBParameter(item.At.UtcDateTime));
            insert.Parameters.Add(new DuckDBParameter(JsonSerializer.Serialize(positioned, TelemetryJson.Options)));
            insert.ExecuteNonQuery();

            using var upsert = connection.CreateCommand();
            upsert.CommandText = "INSERT OR REPLACE INTO alerts VALUES ($1, $2, $3, $4, $5)";
            upsert.Parameters.Add(new DuckDBParameter(item.Alert.AlertId));
            upsert.Parameters.Add(new DuckDBParameter(item.PatientId));
            upsert.Parameters.Add(new DuckDBParameter(item.Alert.RaisedAt.UtcDateTime));
            upsert.Parameters.Add(new DuckDBParameter(item.Alert.IsOpen));
            upsert.Parameters.Add(new DuckDBParameter(JsonSerializer.Serialize(item.Alert, TelemetryJson.Options)));
            upsert.ExecuteNonQuery();
            stored.Add(positioned);
        }

        transaction.Commit();
        _lastPosition = next;
        return stored;
    }

    private static long LastPosition(DuckDBConnection connection)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT COALESCE(MAX(position), 0) FROM alert_events";
        return Convert.ToInt64(command.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture);
    }
}
