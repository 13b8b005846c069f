using System.Runtime.CompilerServices;
using DuckDB.NET.Data;
using Telemetry.Core.Grains;
using Telemetry.Core.Storage;
using Telemetry.Core.Vitals;

namespace Telemetry.Storage.DuckDb;

/// <summary>
/// A commit log in the DuckDB file; the mark of how far grains have applied the commits is a row of it. For the
/// embedded store (<see cref="ForReadings"/>) every reading carries the id of the commit that stored it (ids increase
/// by one per commit within a run, a failed commit's too, and never repeat one that stored a reading). For a series
/// server (<see cref="ForLedger"/>) the store records, with each commit's batch numbers, the minutes it stored readings
/// in (table <c>commit_minutes</c>); its ids are the clock's microseconds, and rows the mark has passed are deleted once
/// the server shows their commits whole (<see cref="Influx.SeriesServerOptions.ReadableAfter"/> after they were made).
/// </summary>
public sealed class DuckDbCommitLog : ICommitLog
{
    // Minutes listed per query: each page is a query of its own, so no read stays open while grains are called.
    private const int PageSize = 10_000;

    private readonly DuckDbDatabase _database;
    private readonly Func<DuckDBConnection, long> _lastCommitId;
    private readonly string _minutes;
    private readonly bool _deleteApplied;

    // For a series server: the commits it may not show whole yet are those made this recently (their ids are times).
    private readonly TimeSpan _readableAfter;
    private readonly TimeProvider _clock;

    // Whether the log is the readings' own (the embedded store), which can say what an unclean stop left open.
    private readonly bool _readings;

    private DuckDbCommitLog(
        DuckDbDatabase database, Func<DuckDBConnection, long> lastCommitId, string minutes, bool deleteApplied, TimeSpan readableAfter, TimeProvider clock, bool readings = false)
    {
        _database = database;
        _lastCommitId = lastCommitId;
        _minutes = minutes;
        _deleteApplied = deleteApplied;
        _readableAfter = readableAfter;
        _clock = clock;
        _readings = readings;
    }

    /// <summary>The embedded store's log: the readings themselves.</summary>
    public static DuckDbCommitLog ForReadings(DuckDbDatabase database, DuckDbRawSeriesStore rawStore) => new(
        database,
        _ => rawStore.LastCommitId,
        """
        SELECT s.patient_id, s.kind, (epoch_ms(r.ts) // 60000) * 60000 AS minute, r.commit_id
        FROM all_readings r JOIN all_series s USING (series_id)
        WHERE r.commit_id > $1 AND r.commit_id <= $2
        """,
        deleteApplied: false,
        readableAfter: TimeSpan.Zero,
        TimeProvider.System,
        readings: true);

    /// <summary>
    /// A series server's log: the minutes its commits recorded in the local file. The server shows a commit whole
    /// <paramref name="readableAfter"/> after it was made, by <paramref name="clock"/>.
    /// </summary>
    public static DuckDbCommitLog ForLedger(DuckDbDatabase database, TimeSpan readableAfter, TimeProvider clock) => new(
        database,
        connection =>
        {
            using var command = connection.CreateCommand();
            command.CommandText = "SELECT coalesce(max(commit_id), 0) FROM all_commit_minutes";
            return Convert.ToInt64(command.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture);
        },
        "SELECT patient_id, kind, minute, commit_id FROM all_commit_minutes WHERE commit_id > $1 AND commit_id <= $2",
        deleteApplied: true,
        readableAfter,
        clock);

    public Task<CommitLogPosition> ReadPositionAsync(CancellationToken cancellationToken = default) =>
        Task.Run(() =>
        {
            using var connection = _database.OpenConnection();
            using var command = connection.CreateCommand();
            command.CommandText = "SELECT applied_through FROM grain_progress WHERE id = 1";
            var saved = command.ExecuteScalar();
            var last = _lastCommitId(connection);

            // No mark (a new file, or one from before the mark): take the grains to be up to date. A mark past the last
            // commit: the commits after the last that stored a reading stored nothing, and their ids are handed out
            // again, so the mark comes back to it before any of them.
            if (saved is null or DBNull || Convert.ToInt64(saved, System.Globalization.CultureInfo.InvariantCulture) > last)
            {
                Save(connection, last);
                return new CommitLogPosition(last, last, Math.Min(last, ShownWholeThrough()));
            }

            var applied = Convert.ToInt64(saved, System.Globalization.CultureInfo.InvariantCulture);
            return new CommitLogPosition(applied, last, Math.Min(applied, ShownWholeThrough()));
        }, cancellationToken);

    /// <remarks>
    /// For a series server, a commit made <see cref="_readableAfter"/> ago: an id is at least its commit's time in
    /// microseconds, so a commit with a lower id was made before.
    /// </remarks>
    public long ShownWholeThrough() =>
        _readableAfter <= TimeSpan.Zero ? long.MaxValue : (_clock.GetUtcNow() - _readableAfter).ToUnixTimeMilliseconds() * 1_000;

    public Task SaveAppliedThroughAsync(long commitId, CancellationToken cancellationToken = default) =>
        Task.Run(() =>
        {
            using var connection = _database.OpenConnection();
            Save(connection, commitId);
            if (_deleteApplied)
            {
                // What the mark has passed is not needed again once the server shows it whole: until then a start
                // settles it again (see CommitLogPosition.ShownThrough).
                var forget = Math.Min(commitId, ShownWholeThrough());
                foreach (var catalog in _database.Readings.Catalogs)
                {
                    using var delete = connection.CreateCommand();
                    delete.CommandText = $"DELETE FROM {DuckDbDatabase.Quote(catalog)}.main.commit_minutes WHERE commit_id <= $1";
                    delete.Parameters.Add(new DuckDBParameter(forget));
                    delete.ExecuteNonQuery();
                }
            }
        }, cancellationToken);

    public async IAsyncEnumerable<PatientMinute> MinutesCommittedAsync(
        long afterCommitId, long throughCommitId, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var page = new List<PatientMinute>(PageSize);
        PatientMinute? last = null;
        do
        {
            page.Clear();
            var after = last;
            await Task.Run(() => ReadPage(afterCommitId, throughCommitId, after, page), cancellationToken);
            foreach (var minute in page)
            {
                yield return minute;
            }

            last = page.Count > 0 ? page[^1] : null;
        }
        while (page.Count == PageSize);
    }

    /// <remarks>
    /// For the embedded store, after an unclean stop (see <see cref="DuckDbDatabase.StoppedUncleanly"/>): the days are
    /// those of the newest reading not in the future as of the start that found the stop (<see cref="DuckDbDatabase.RecoverAsOf"/>)
    /// and the day before (a grain's windows of a day stay open until its first call after the day ends, or it goes
    /// idle). One read of those two days of readings. A series server's log
    /// (<see cref="ForLedger"/>) keeps no readings to read them from: it says nothing.
    /// </remarks>
    public async Task<IReadOnlyList<PatientMinute>> MinutesOpenAtStopAsync(CancellationToken cancellationToken = default)
    {
        if (!_readings || !_database.StoppedUncleanly)
        {
            return [];
        }

        var atStop = await LastMinutesOfLastDaysAsync(_database.RecoverAsOf, _database.RecoverThroughCommitId, cancellationToken);

        // Found by an earlier start whose recovery did not finish: that stop's days, and those as of now (the server may
        // have stopped uncleanly again since). Windows recomputed that were not lost come out the same.
        return _database.RecoverAsOf is { } asOf && _clock.GetUtcNow() - asOf > TimeSpan.FromMinutes(1)
            ? [.. atStop.Union(await LastMinutesOfLastDaysAsync(cancellationToken: cancellationToken))]
            : atStop;
    }

    /// <summary>
    /// For each patient and vital with readings on the day of the newest reading not in the future (as of
    /// <paramref name="asOf"/>, by default now; of those committed through <paramref name="throughCommitId"/>, when
    /// given) or the day before, the last minute holding one on each of those days (see <see cref="MinutesOpenAtStopAsync"/>).
    /// </summary>
    public Task<IReadOnlyList<PatientMinute>> LastMinutesOfLastDaysAsync(DateTimeOffset? asOf = null, long? throughCommitId = null, CancellationToken cancellationToken = default) =>
        !_readings
            ? Task.FromResult<IReadOnlyList<PatientMinute>>([])
            : Task.Run<IReadOnlyList<PatientMinute>>(
                () =>
                {
                    using var connection = _database.OpenConnection();
                    using var command = connection.CreateCommand();
                    command.CommandText = """
                        WITH newest AS (SELECT max(ts) AS ts FROM all_readings WHERE ts <= $1 AND commit_id <= $2)
                        SELECT s.patient_id, s.kind, max((epoch_ms(r.ts) // 60000) * 60000) AS minute
                        FROM all_readings r JOIN all_series s USING (series_id), newest
                        WHERE r.ts >= date_trunc('day', newest.ts) - INTERVAL 1 DAY AND r.ts <= newest.ts
                        GROUP BY s.patient_id, s.kind, epoch_ms(r.ts) // 86400000
                        ORDER BY s.patient_id, s.kind, minute
                        """;

                    // Not after now and the clock skew a device is allowed: a reading stamped far ahead says nothing of the stop.
                    command.Parameters.Add(new DuckDBParameter((asOf ?? _clock.GetUtcNow()).UtcDateTime.AddMinutes(10)));
                    command.Parameters.Add(new DuckDBParameter(throughCommitId ?? long.MaxValue));
                    var minutes = new List<PatientMinute>();
                    using var reader = command.ExecuteReader();
                    while (reader.Read())
                    {
                        var minute = reader.GetInt64(2);
                        minutes.Add(new PatientMinute(reader.GetString(0), new CommittedMinute((VitalKind)reader.GetByte(1), minute, 0, 0)));
                    }

                    return minutes;
                },
                cancellationToken);

    public void OpenWindowsRecovered() => _database.Recovered();

    public void OpenWindowsLeft() => _database.RecoveryNeeded();

    /// <summary>One page of the minutes, in (patient, vital, minute) order, after <paramref name="after"/>.</summary>
    private void ReadPage(long afterCommitId, long throughCommitId, PatientMinute? after, List<PatientMinute> page)
    {
        // Rows are appended in commit order, so DuckDB skips the row groups outside the range by their zone maps.
        using var connection = _database.OpenConnection();
        using var command = connection.CreateCommand();
        command.CommandText = $"""
            SELECT patient_id, kind, minute, min(commit_id), max(commit_id) FROM ({_minutes})
            WHERE $3 IS NULL OR patient_id > $3 OR (patient_id = $3 AND (kind > $4 OR (kind = $4 AND minute > $5)))
            GROUP BY patient_id, kind, minute
            ORDER BY patient_id, kind, minute
            LIMIT {PageSize}
            """;
        command.Parameters.Add(new DuckDBParameter(afterCommitId));
        command.Parameters.Add(new DuckDBParameter(throughCommitId));
        command.Parameters.Add(new DuckDBParameter((object?)after?.PatientId ?? DBNull.Value));
        command.Parameters.Add(new DuckDBParameter((byte)(after?.Minute.Kind ?? 0)));
        command.Parameters.Add(new DuckDBParameter(after?.Minute.MinuteStartMs ?? 0));
        using var reader = command.ExecuteReader();
        while (reader.Read())
        {
            page.Add(new PatientMinute(reader.GetString(0), new CommittedMinute((VitalKind)reader.GetByte(1), reader.GetInt64(2), reader.GetInt64(3), reader.GetInt64(4))));
        }
    }

    private static void Save(DuckDBConnection connection, long commitId)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "INSERT OR REPLACE INTO grain_progress VALUES (1, $1)";
        command.Parameters.Add(new DuckDBParameter(commitId));
        command.ExecuteNonQuery();
    }
}
