using System.Text.Json;
using DuckDB.NET.Data;
using Telemetry.Core;
using Telemetry.Core.Alerts;
using Telemetry.Core.Storage;

namespace Telemetry.Storage.DuckDb;

/// <summary>
/// Alert history in the embedded DuckDB file: the event log (positions in commit order, so a consumer that reads
/// "after position N" never skips one) and each alert as it stands, updated in the same transaction. Writes go through
/// <see cref="DuckDbStateWrites"/>, which also stores the events a grain's alert state carries with that state, and
/// journals them before the file takes them: every read here first waits for the file to hold what was written.
/// </summary>
public sealed class DuckDbAlertStore : IAlertStore
{
    private readonly DuckDbDatabase _database;

    public DuckDbAlertStore(DuckDbDatabase database)
    {
        _database = database;
    }

    // Appends go through the database file's one writer of state and alerts, grouped (a burst of alerts costs one record
    // in its journal, not one each); events a grain's state write already stored are answered at once.
    public Task<IReadOnlyList<AlertEvent>> AppendAsync(IReadOnlyList<AlertEvent> events, CancellationToken cancellationToken = default) =>
        _database.StateWrites.AppendAsync(events, cancellationToken);

    public Task<IReadOnlyList<AlertEvent>> ReadEventsAsync(long afterPosition, string? patientId, int limit, CancellationToken cancellationToken = default) =>
        ReadAsync<IReadOnlyList<AlertEvent>>(() =>
        {
            using var connection = _database.OpenConnection();
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

    public Task<long> LastPositionAsync(CancellationToken cancellationToken = default) => ReadAsync(() =>
    {
        using var connection = _database.OpenConnection();
        return DuckDbStateWrites.LastPosition(connection);
    }, cancellationToken);

    public Task<IReadOnlyList<Alert>> QueryAsync(AlertQuery query, CancellationToken cancellationToken = default) =>
        ReadAsync<IReadOnlyList<Alert>>(() =>
        {
            using var connection = _database.OpenConnection();
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

            if (query.After is { } after)
            {
                command.Parameters.Add(new DuckDBParameter("after_at", after.RaisedAt.UtcDateTime));
                command.Parameters.Add(new DuckDBParameter("after_id", after.AlertId));
                where.Add("(raised_at < $after_at OR (raised_at = $after_at AND alert_id < $after_id))");
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

    public Task<Alert?> GetAsync(string alertId, CancellationToken cancellationToken = default) => ReadAsync(() =>
    {
        using var connection = _database.OpenConnection();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT alert FROM alerts WHERE alert_id = $1";
        command.Parameters.Add(new DuckDBParameter(alertId));
        return command.ExecuteScalar() is string json ? JsonSerializer.Deserialize<Alert>(json, TelemetryJson.Options) : null;
    }, cancellationToken);

    /// <summary>Runs a read of the log or the alerts once the file holds every write answered before it (see <see cref="DuckDbStateWrites.SettleAsync(CancellationToken)"/>).</summary>
    private async Task<T> ReadAsync<T>(Func<T> read, CancellationToken cancellationToken)
    {
        await _database.StateWrites.SettleAsync(cancellationToken);
        return await Task.Run(read, cancellationToken);
    }

    public Task<long> DeleteBeforeAsync(DateTimeOffset cutoff, CancellationToken cancellationToken = default) =>
        _database.StateWrites.DeleteBeforeAsync(cutoff, cancellationToken);

    public Task SetWatchedAsync(string patientId, bool watched, CancellationToken cancellationToken = default) => Task.Run(() =>
    {
        using var connection = _database.OpenConnection();
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
            using var connection = _database.OpenConnection();
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

    public Task<long?> ReadCursorAsync(string consumer, CancellationToken cancellationToken = default) => Task.Run(() =>
    {
        using var connection = _database.OpenConnection();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT position FROM alert_cursors WHERE consumer = $1";
        command.Parameters.Add(new DuckDBParameter(consumer));
        return command.ExecuteScalar() is long position ? position : (long?)null;
    }, cancellationToken);

    public Task WriteCursorAsync(string consumer, long position, CancellationToken cancellationToken = default) => Task.Run(() =>
    {
        using var connection = _database.OpenConnection();
        using var command = connection.CreateCommand();
        command.CommandText = "INSERT OR REPLACE INTO alert_cursors VALUES ($1, $2)";
        command.Parameters.Add(new DuckDBParameter(consumer));
        command.Parameters.Add(new DuckDBParameter(position));
        command.ExecuteNonQuery();
    }, cancellationToken);
}
