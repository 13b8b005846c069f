using System.Text.Json;
using DuckDB.NET.Data;
using DuckDB.NET.Native;
using Telemetry.Core;
using Telemetry.Core.Alerts;
using Telemetry.Core.Storage;

namespace Telemetry.Storage.DuckDb;

/// <summary>
/// Alert history in the embedded DuckDB file: the event log (positions in commit order, so a consumer that reads
/// "after position N" never skips one) and each alert as it stands, updated in the same transaction.
/// </summary>
public sealed class DuckDbAlertStore : IAlertStore
{
    private readonly DuckDbDatabase _database;

    // Appends are serialised, and grouped (a burst of alerts costs a few commits, not one each). A position is handed
    // out and committed before the next, so readers see no gaps fill in later.
    private readonly WriteGroups<IReadOnlyList<AlertEvent>, IReadOnlyList<AlertEvent>> _appends;
    private long _lastPosition = -1;

    // Each patient's last stored event number, read with the last position on the first append.
    private Dictionary<string, long> _lastSeq = [];

    public DuckDbAlertStore(DuckDbDatabase database)
    {
        _database = database;
        _appends = new(Append);
    }

    public Task<IReadOnlyList<AlertEvent>> AppendAsync(IReadOnlyList<AlertEvent> events, CancellationToken cancellationToken = default) =>
        events.Count == 0 ? Task.FromResult<IReadOnlyList<AlertEvent>>([]) : _appends.WriteAsync(events, cancellationToken);

    public Task<IReadOnlyList<AlertEvent>> ReadEventsAsync(long afterPosition, string? patientId, int limit, CancellationToken cancellationToken = default) =>
        Task.Run<IReadOnlyList<AlertEvent>>(() =>
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

    public Task<long> LastPositionAsync(CancellationToken cancellationToken = default) => Task.Run(() =>
    {
        using var connection = _database.OpenConnection();
        return LastPosition(connection);
    }, cancellationToken);

    public Task<IReadOnlyList<Alert>> QueryAsync(AlertQuery query, CancellationToken cancellationToken = default) =>
        Task.Run<IReadOnlyList<Alert>>(() =>
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
        using var connection = _database.OpenConnection();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT alert FROM alerts WHERE alert_id = $1";
        command.Parameters.Add(new DuckDBParameter(alertId));
        return command.ExecuteScalar() is string json ? JsonSerializer.Deserialize<Alert>(json, TelemetryJson.Options) : null;
    }, cancellationToken);

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

    public Task<long> ReadCursorAsync(string consumer, CancellationToken cancellationToken = default) => Task.Run(() =>
    {
        using var connection = _database.OpenConnection();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT position FROM alert_cursors WHERE consumer = $1";
        command.Parameters.Add(new DuckDBParameter(consumer));
        return command.ExecuteScalar() is long position ? position : 0L;
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

    /// <summary>
    /// Stores a group of appends in one transaction, a few statements for the whole group. A newly raised alert is
    /// inserted: its id is new, as the grain numbers its alerts in the state it wrote before handing the events over.
    /// Should a row of that id exist all the same (grain state restored from an older copy of the file), the group is
    /// stored again with the row replaced.
    /// </summary>
    private IReadOnlyList<AlertEvent>[] Append(IReadOnlyList<IReadOnlyList<AlertEvent>> group)
    {
        try
        {
            return Append(group, replaceRaised: false);
        }
        catch (DuckDBException exception) when (exception.ErrorType == DuckDBErrorType.Constraint)
        {
            return Append(group, replaceRaised: true);
        }
    }

    private IReadOnlyList<AlertEvent>[] Append(IReadOnlyList<IReadOnlyList<AlertEvent>> group, bool replaceRaised)
    {
        using var connection = _database.OpenConnection();
        if (_lastPosition < 0)
        {
            _lastPosition = LastPosition(connection);
            _lastSeq = LastSeqs(connection);
        }

        using var transaction = connection.BeginTransaction();

        // An event handed over again (a grain's outbox after a crash) keeps the position it was stored with. A patient's
        // events are numbered in order, so only one numbered no later than its last stored can have been stored.
        var positions = new Dictionary<(string PatientId, long Seq), long>();
        var again = group.SelectMany(events => events)
            .Where(item => _lastSeq.TryGetValue(item.PatientId, out var last) && item.Seq <= last)
            .Select(item => (item.PatientId, item.Seq))
            .Distinct()
            .ToList();
        DuckDbValues.Read(connection,
            "SELECT e.patient_id, e.seq, e.position FROM alert_events e JOIN (VALUES {values}) k(patient_id, seq) USING (patient_id, seq)",
            again, key => [key.PatientId, key.Seq],
            reader => positions[(reader.GetString(0), reader.GetInt64(1))] = reader.GetInt64(2));

        var next = _lastPosition;
        var added = new List<AlertEvent>();
        var results = new IReadOnlyList<AlertEvent>[group.Count];
        for (var g = 0; g < group.Count; g++)
        {
            var stored = new List<AlertEvent>(group[g].Count);
            foreach (var item in group[g])
            {
                if (!positions.TryGetValue((item.PatientId, item.Seq), out var position))
                {
                    position = ++next;
                    positions[(item.PatientId, item.Seq)] = position;
                    added.Add(item with { Position = position });
                }

                stored.Add(item with { Position = position });
            }

            results[g] = stored;
        }

        DuckDbValues.Execute(connection, "INSERT INTO alert_events VALUES {values}", added, item =>
            [item.Position, item.PatientId, item.Seq, item.Alert.AlertId, (byte)item.Type, item.At.UtcDateTime, JsonSerializer.Serialize(item, TelemetryJson.Options)]);

        // Each alert as the group's latest event of it leaves it: put in place with the event that raised it, updated
        // after. A plain INSERT and an UPDATE each cost DuckDB a fraction of an INSERT OR REPLACE, which stays for a row
        // found missing or already there.
        var latest = added.GroupBy(item => item.Alert.AlertId, StringComparer.Ordinal)
            .Select(events => (Raised: events.Any(item => item.Type == AlertEventType.Raised), events.Last().Alert))
            .ToList();
        var raised = latest.Where(alert => alert.Raised).Select(alert => alert.Alert).ToList();
        var changed = latest.Where(alert => !alert.Raised).Select(alert => alert.Alert).ToList();
        DuckDbValues.Execute(connection, replaceRaised ? "INSERT OR REPLACE INTO alerts VALUES {values}" : "INSERT INTO alerts VALUES {values}", raised, AlertRow);
        var updated = changed is [var only]
            ? DuckDbValues.ExecuteRow(connection, "UPDATE alerts SET is_open = $1, alert = $2 WHERE alert_id = $3",
                only.IsOpen, JsonSerializer.Serialize(only, TelemetryJson.Options), only.AlertId)
            : DuckDbValues.Execute(connection,
                "UPDATE alerts SET is_open = v.is_open, alert = v.alert FROM (VALUES {values}) v(alert_id, patient_id, raised_at, is_open, alert) "
                + "WHERE alerts.alert_id = v.alert_id",
                changed, AlertRow);
        if (updated < changed.Count)
        {
            DuckDbValues.Execute(connection, "INSERT OR REPLACE INTO alerts VALUES {values}", changed, AlertRow);
        }

        transaction.Commit();
        _lastPosition = next;
        foreach (var item in added)
        {
            _lastSeq[item.PatientId] = Math.Max(item.Seq, _lastSeq.GetValueOrDefault(item.PatientId));
        }

        return results;
    }

    private static object?[] AlertRow(Alert alert) =>
        [alert.AlertId, alert.PatientId, alert.RaisedAt.UtcDateTime, alert.IsOpen, JsonSerializer.Serialize(alert, TelemetryJson.Options)];

    /// <summary>Each patient's last stored event number.</summary>
    private static Dictionary<string, long> LastSeqs(DuckDBConnection connection)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT patient_id, MAX(seq) FROM alert_events GROUP BY patient_id";
        using var reader = command.ExecuteReader();
        var seqs = new Dictionary<string, long>(StringComparer.Ordinal);
        while (reader.Read())
        {
            seqs[reader.GetString(0)] = reader.GetInt64(1);
        }

        return seqs;
    }

    private static long LastPosition(DuckDBConnection connection)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT COALESCE(MAX(position), 0) FROM alert_events";
        return Convert.ToInt64(command.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture);
    }
}
