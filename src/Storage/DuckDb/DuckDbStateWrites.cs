using System.Runtime.ExceptionServices;
using System.Text.Json;
using DuckDB.NET.Data;
using DuckDB.NET.Native;
using Orleans.Runtime;
using Orleans.Storage;
using Telemetry.Core;
using Telemetry.Core.Alerts;

namespace Telemetry.Storage.DuckDb;

/// <summary>
/// The database file's one writer of grain state and the alert log. Writes group themselves (see
/// <see cref="WriteGroups{TRequest, TResult}"/>): a group is one transaction, whatever grains and appends it holds.
/// <para>
/// A grain state that carries alert events (<see cref="IAlertOutbox"/>) is written with them: the events are stored in
/// the state's transaction, so an alert change costs one commit, and the state and the log never disagree. The grain
/// then hands the same events to <see cref="AppendAsync"/>, which finds them here and answers at once.
/// </para>
/// <para>
/// Positions are handed out in this one writer and each group is committed before the next, so a reader that reads
/// "after position N" never sees a gap fill in later.
/// </para>
/// </summary>
internal sealed class DuckDbStateWrites
{
    // Events stored with a grain's state and not yet asked for by its append, the latest few thousand (oldest dropped
    // first). The append follows the state write at once; an entry stays only when a grain stops in between, and an
    // append that misses finds its events in the file anyway.
    private const int MaxStoredWithState = 4_096;

    private readonly DuckDbDatabase _database;
    private readonly WriteGroups<Write, Written> _writes;
    private readonly Lock _storedLock = new();
    private readonly Dictionary<(string PatientId, long Seq), AlertEvent> _storedWithState = [];
    private readonly Queue<(string PatientId, long Seq)> _storedOrder = new();

    // The last position handed out, and each patient's last stored event number; read on the first write.
    private long _lastPosition = -1;
    private Dictionary<string, long> _lastSeq = [];

    public DuckDbStateWrites(DuckDbDatabase database)
    {
        _database = database;
        _writes = new(WriteGroup);
    }

    /// <summary>
    /// Writes (or, without <see cref="StateChange.Data"/>, clears) a grain's state with the alert events it carries.
    /// Returns the exception to throw when the stored ETag is not the one expected; nothing of the change is stored then.
    /// </summary>
    public async Task<InconsistentStateException?> WriteStateAsync(StateChange change, IReadOnlyList<AlertEvent> events)
    {
        var written = await _writes.WriteAsync(new Write(change, events));
        written.Failure?.Throw();
        return written.Refused;
    }

    /// <summary>Stores the events not stored before and returns every one of them with its position.</summary>
    public Task<IReadOnlyList<AlertEvent>> AppendAsync(IReadOnlyList<AlertEvent> events, CancellationToken cancellationToken)
    {
        if (events.Count == 0)
        {
            return Task.FromResult<IReadOnlyList<AlertEvent>>([]);
        }

        return TakeStoredWithState(events) is { } stored ? Task.FromResult<IReadOnlyList<AlertEvent>>(stored) : AppendStoringAsync(events, cancellationToken);
    }

    private async Task<IReadOnlyList<AlertEvent>> AppendStoringAsync(IReadOnlyList<AlertEvent> events, CancellationToken cancellationToken)
    {
        var written = await _writes.WriteAsync(new Write(null, events), cancellationToken);
        written.Failure?.Throw();
        return written.Stored;
    }

    /// <summary>The events as stored with a state, when every one of them was; null otherwise.</summary>
    private AlertEvent[]? TakeStoredWithState(IReadOnlyList<AlertEvent> events)
    {
        lock (_storedLock)
        {
            var stored = new AlertEvent[events.Count];
            for (var i = 0; i < events.Count; i++)
            {
                if (!_storedWithState.TryGetValue((events[i].PatientId, events[i].Seq), out var found))
                {
                    return null;
                }

                stored[i] = found;
            }

            foreach (var item in events)
            {
                _storedWithState.Remove((item.PatientId, item.Seq));
            }

            return stored;
        }
    }

    /// <summary>
    /// Writes a group in one transaction. A group that fails is written again one write at a time, so a write that
    /// cannot be stored (an event the log refuses) fails alone, not every grain whose state shared its group.
    /// </summary>
    private Written[] WriteGroup(IReadOnlyList<Write> group)
    {
        try
        {
            return WriteTransaction(group);
        }
        catch (Exception) when (group.Count > 1)
        {
            var results = new Written[group.Count];
            for (var i = 0; i < group.Count; i++)
            {
                try
                {
                    results[i] = WriteTransaction([group[i]])[0];
                }
                catch (Exception alone)
                {
                    results[i] = new Written(null, [], ExceptionDispatchInfo.Capture(alone));
                }
            }

            return results;
        }
    }

    private Written[] WriteTransaction(IReadOnlyList<Write> group)
    {
        try
        {
            try
            {
                return WriteTransaction(group, replaceRaised: false);
            }
            catch (DuckDBException exception) when (exception.ErrorType == DuckDBErrorType.Constraint)
            {
                return WriteTransaction(group, replaceRaised: true);
            }
        }
        catch
        {
            // What the file holds is read again before the next write: another writer of the file may have moved on.
            _lastPosition = -1;
            throw;
        }
    }

    /// <summary>
    /// Writes a group in one transaction: the state changes (each checked against its ETag), then the events of the
    /// accepted ones and of the appends, in the group's order. A newly raised alert is inserted: its id is new, as the
    /// grain numbers its alerts in the state it writes. Should a row of that id exist all the same (grain state restored
    /// from an older copy of the file), the group is written again with the row replaced.
    /// </summary>
    private Written[] WriteTransaction(IReadOnlyList<Write> group, bool replaceRaised)
    {
        using var connection = _database.OpenConnection();
        if (_lastPosition < 0)
        {
            var seqs = LastSeqs(connection);
            _lastPosition = LastPosition(connection);
            _lastSeq = seqs;
        }

        using var transaction = connection.BeginTransaction();
        var refused = ApplyStateChanges(connection, group);
        var results = new Written[group.Count];
        var accepted = new List<IReadOnlyList<AlertEvent>>(group.Count);
        for (var i = 0; i < group.Count; i++)
        {
            accepted.Add(refused[i] is null ? group[i].Events : []);
        }

        var (stored, added, next) = AppendEvents(connection, accepted, replaceRaised);
        transaction.Commit();

        _lastPosition = next;
        foreach (var item in added)
        {
            _lastSeq[item.PatientId] = Math.Max(item.Seq, _lastSeq.GetValueOrDefault(item.PatientId));
        }

        lock (_storedLock)
        {
            for (var i = 0; i < group.Count; i++)
            {
                results[i] = new Written(refused[i], stored[i]);
                if (group[i].State is null)
                {
                    continue;
                }

                foreach (var item in stored[i])
                {
                    _storedWithState[(item.PatientId, item.Seq)] = item;
                    _storedOrder.Enqueue((item.PatientId, item.Seq));
                    if (_storedOrder.Count > MaxStoredWithState)
                    {
                        _storedWithState.Remove(_storedOrder.Dequeue());
                    }
                }
            }
        }

        return results;
    }

    /// <summary>
    /// Applies the group's state changes, a few statements for all of them. A change whose ETag does not match what is
    /// stored (or what an earlier change of the group left) is refused alone: its result is the exception to throw.
    /// </summary>
    private static InconsistentStateException?[] ApplyStateChanges(DuckDBConnection connection, IReadOnlyList<Write> group)
    {
        var results = new InconsistentStateException?[group.Count];
        var keys = group.Where(write => write.State is not null)
            .Select(write => (write.State!.StateName, GrainId: write.State.GrainId.ToString()))
            .Distinct()
            .ToList();
        if (keys.Count == 0)
        {
            return results;
        }

        var etags = keys.ToDictionary(key => key, _ => (string?)null);
        void Found(DuckDBDataReader reader) => etags[(reader.GetString(0), reader.GetString(1))] = reader.GetString(2);

        // One grain's update alone (an alert change at a time): the UPDATE checks the ETag itself, one statement where a
        // read and an UPDATE cost DuckDB about half a millisecond more. The stored ETag is read only to refuse.
        var withState = Enumerable.Range(0, group.Count).Where(i => group[i].State is not null).ToList();
        if (withState is [var alone] && group[alone].State is { ExpectedETag: not null, Data: not null } single)
        {
            var (stateName, grainId) = keys[0];
            if (DuckDbValues.ExecuteRow(connection, "UPDATE grain_state SET etag = $1, data = $2 WHERE grain_type = $3 AND grain_id = $4 AND etag = $5",
                single.NewETag, single.Data, stateName, grainId, single.ExpectedETag) == 0)
            {
                DuckDbValues.ReadRow(connection, "SELECT grain_type, grain_id, etag FROM grain_state WHERE grain_type = $1 AND grain_id = $2",
                    [stateName, grainId], Found);
                results[alone] = Refusal(single, etags[keys[0]]);
            }

            return results;
        }

        if (keys.Count == 1)
        {
            DuckDbValues.ReadRow(connection, "SELECT grain_type, grain_id, etag FROM grain_state WHERE grain_type = $1 AND grain_id = $2",
                [keys[0].StateName, keys[0].GrainId], Found);
        }
        else
        {
            DuckDbValues.Read(connection,
                "SELECT s.grain_type, s.grain_id, s.etag FROM grain_state s JOIN (VALUES {values}) k(grain_type, grain_id) USING (grain_type, grain_id)",
                keys, key => [key.StateName, key.GrainId], Found);
        }

        // The last accepted change of each grain is what the group leaves stored.
        var existed = etags.Where(pair => pair.Value is not null).Select(pair => pair.Key).ToHashSet();
        var last = new Dictionary<(string StateName, string GrainId), StateChange>();
        for (var i = 0; i < group.Count; i++)
        {
            if (group[i].State is not { } change)
            {
                continue;
            }

            var key = (change.StateName, change.GrainId.ToString());
            var stored = etags[key];
            if (!string.Equals(stored, change.ExpectedETag, StringComparison.Ordinal))
            {
                results[i] = Refusal(change, stored);
                continue;
            }

            etags[key] = change.NewETag;
            last[key] = change;
        }

        // An UPDATE of rows that exist and an INSERT of those that do not: DuckDB's INSERT OR REPLACE costs several times either.
        var updates = last.Where(pair => pair.Value.Data is not null && existed.Contains(pair.Key)).ToList();
        var inserts = last.Where(pair => pair.Value.Data is not null && !existed.Contains(pair.Key)).ToList();
        var clears = last.Where(pair => pair.Value.Data is null && existed.Contains(pair.Key)).Select(pair => pair.Key).ToList();
        if (updates is [var (onlyKey, only)])
        {
            DuckDbValues.ExecuteRow(connection, "UPDATE grain_state SET etag = $1, data = $2 WHERE grain_type = $3 AND grain_id = $4",
                only.NewETag, only.Data, onlyKey.StateName, onlyKey.GrainId);
        }
        else
        {
            DuckDbValues.Execute(connection,
                "UPDATE grain_state SET etag = v.etag, data = v.data FROM (VALUES {values}) v(grain_type, grain_id, etag, data) "
                + "WHERE grain_state.grain_type = v.grain_type AND grain_state.grain_id = v.grain_id",
                updates, write => [write.Key.StateName, write.Key.GrainId, write.Value.NewETag, write.Value.Data]);
        }

        DuckDbValues.Execute(connection, "INSERT INTO grain_state VALUES {values}",
            inserts, write => [write.Key.StateName, write.Key.GrainId, write.Value.NewETag, write.Value.Data]);
        DuckDbValues.Execute(connection, "DELETE FROM grain_state WHERE (grain_type, grain_id) IN (SELECT * FROM (VALUES {values}))",
            clears, key => [key.StateName, key.GrainId]);
        return results;
    }

    private static InconsistentStateException Refusal(StateChange change, string? stored) =>
        new($"State '{change.StateName}' of {change.GrainId} was changed by someone else.", stored, change.ExpectedETag);

    /// <summary>
    /// Stores each list's events not stored before, with the next positions, and each alert as its latest event leaves
    /// it. Returns every list's events with their positions, the events added, and the last position handed out.
    /// </summary>
    private (IReadOnlyList<AlertEvent>[] Stored, List<AlertEvent> Added, long Next) AppendEvents(
        DuckDBConnection connection, List<IReadOnlyList<AlertEvent>> lists, bool replaceRaised)
    {
        var next = _lastPosition;
        var added = new List<AlertEvent>();
        var results = new IReadOnlyList<AlertEvent>[lists.Count];
        if (lists.All(events => events.Count == 0))
        {
            Array.Fill(results, []);
            return (results, added, next);
        }

        // An event handed over again (a grain's outbox after a crash) keeps the position it was stored with. A patient's
        // events are numbered in order, so only one numbered no later than its last stored can have been stored.
        var positions = new Dictionary<(string PatientId, long Seq), long>();
        var again = lists.SelectMany(events => events)
            .Where(item => _lastSeq.TryGetValue(item.PatientId, out var last) && item.Seq <= last)
            .Select(item => (item.PatientId, item.Seq))
            .Distinct()
            .ToList();
        DuckDbValues.Read(connection,
            "SELECT e.patient_id, e.seq, e.position FROM alert_events e JOIN (VALUES {values}) k(patient_id, seq) USING (patient_id, seq)",
            again, key => [key.PatientId, key.Seq],
            reader => positions[(reader.GetString(0), reader.GetInt64(1))] = reader.GetInt64(2));

        for (var g = 0; g < lists.Count; g++)
        {
            var stored = new List<AlertEvent>(lists[g].Count);
            foreach (var item in lists[g])
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

        return (results, added, next);
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

    /// <summary>The position of the latest stored event; zero when there is none.</summary>
    internal static long LastPosition(DuckDBConnection connection)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT COALESCE(MAX(position), 0) FROM alert_events";
        return Convert.ToInt64(command.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>A write (with <paramref name="Data"/>) or a clear (without) of one grain's state.</summary>
    internal sealed record StateChange(string StateName, GrainId GrainId, string? ExpectedETag, byte[]? Data, string? NewETag);

    /// <summary>A state change with the events it carries (stored with it when it is accepted), or an append alone.</summary>
    private readonly record struct Write(StateChange? State, IReadOnlyList<AlertEvent> Events);

    /// <summary>
    /// A write's answer: the refusal of its state change, or its events as stored (with their positions); or, when it
    /// failed alone, the exception.
    /// </summary>
    private readonly record struct Written(InconsistentStateException? Refused, IReadOnlyList<AlertEvent> Stored, ExceptionDispatchInfo? Failure = null);
}
