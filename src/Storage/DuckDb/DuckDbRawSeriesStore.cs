using System.Runtime.CompilerServices;
using DuckDB.NET.Data;
using Telemetry.Core.Readings;
using Telemetry.Core.Rollups;
using Telemetry.Core.Storage;
using Telemetry.Core.Vitals;

namespace Telemetry.Storage.DuckDb;

/// <summary>
/// The raw series in the embedded DuckDB files (see <see cref="ReadingsFiles"/>). Commits insert every batch of a
/// flush with one prepared statement (see <see cref="ReadingsInsert"/>) in one transaction, together with the sequence
/// numbers of the batches they store, so a batch and the record that it was committed become durable together and a
/// resent batch is recognised after any restart. A stored reading is its series' id (patient, device and vital, see
/// <see cref="SeriesCatalog"/>), its time, its value, its commit and its batch's sequence number (see
/// <see cref="SequenceLedger"/>).
/// </summary>
/// <remarks>
/// A reading the device already sent (same vital and time) is stored once. The store keeps, per device and vital, the
/// time of the latest reading committed: a reading after it is new without any lookup, which is every reading of a
/// device sending in order. Only readings at or before it (resends, a second uploader, out-of-order data) are looked up,
/// with one range query per device and flush.
/// </remarks>
public sealed class DuckDbRawSeriesStore : IRawSeriesStore, IDisposable
{
    // The duplicate lookup's stretches of candidate times (see MarkDuplicates).
    private const int MaxLookupStretches = 8;
    private const long MinLookupGapMs = 3_600_000;

    /// <summary>About how many readings one transaction of retention deletes.</summary>
    internal const long DeletionChunkRows = 1_000_000;

    private readonly DuckDbDatabase _database;
    private readonly DuckDBConnection _writer;
    private readonly ReadingsInsert _insert;
    private readonly SequenceLedger _sequences;
    private readonly AggregateReads _aggregates;
    private readonly SeriesCatalog _series;
    private readonly Dictionary<(string DeviceId, VitalKind Kind), long> _latest = [];
    private readonly Dictionary<(string DeviceId, VitalKind Kind), long> _flushLatest = [];
    private readonly List<(int Batch, int Reading)> _candidates = [];
    private readonly HashSet<(int Batch, int Reading)> _duplicates = [];
    private readonly HashSet<(int Batch, int Reading)> _conflicts = [];
    private readonly List<bool> _knownSequence = [];

    // A batch's series id per vital kind, looked up on the batch's first reading of the kind; 0 when not yet.
    private readonly int[] _seriesOfKind = new int[byte.MaxValue + 1];

    // A batch's latest time per vital kind while its readings are checked for repeats, with the time before the batch
    // (from the flush or the store): looked up by device and kind on the batch's first reading of the kind only. An
    // entry belongs to the batch whose number it carries.
    private readonly (long Before, long Latest, int Batch)[] _timesOfKind = new (long, long, int)[byte.MaxValue + 1];
    private readonly List<VitalKind> _kindsOfBatch = [];
    private readonly UnjudgedQuarantine _unjudged = new();
    private int _batchNumber;
    private long _lastCommitId;

    public DuckDbRawSeriesStore(DuckDbDatabase database)
    {
        _database = database;
        _aggregates = new AggregateReads(Aggregate);
        _writer = database.OpenConnection();
        _insert = new ReadingsInsert(_writer);
        using (var last = _writer.CreateCommand())
        {
            // Past the sequence log's fold too: a fold can follow commits that stored no reading, and the readings after
            // it are found by their commit ids when the file next opens.
            last.CommandText = "SELECT greatest((SELECT coalesce(max(commit_id), 0) FROM all_readings), (SELECT coalesce(max(commit_id), 0) FROM all_sequence_folds))";
            _lastCommitId = Convert.ToInt64(last.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture);
        }

        _sequences = new SequenceLedger(_writer, database.Readings.Active, _lastCommitId, readingsCarrySequences: true, database.Logger);
        _series = new SeriesCatalog(_writer);

        using var latest = _writer.CreateCommand();
        latest.CommandText = "SELECT s.device_id, s.kind, epoch_ms(max(r.ts)) FROM all_readings r JOIN all_series s USING (series_id) GROUP BY s.device_id, s.kind";
        using var reader = latest.ExecuteReader();
        while (reader.Read())
        {
            _latest[(reader.GetString(0), (VitalKind)reader.GetByte(1))] = reader.GetInt64(2);
        }
    }

    /// <summary>The id of the last commit, stored or failed (a failed commit's id is not used again).</summary>
    public long LastCommitId => Interlocked.Read(ref _lastCommitId);

    public ValueTask<long> CommitAsync(IReadOnlyList<DeviceBatch> batches, Memory<BatchOutcome> outcomes, CancellationToken cancellationToken = default) =>
        ValueTask.FromResult(Commit(batches, outcomes.Span));

    /// <summary>The commit, synchronously: DuckDB's API has no asynchronous execution.</summary>
    public long Commit(IReadOnlyList<DeviceBatch> batches, Span<BatchOutcome> outcomes)
    {
        var commitId = _lastCommitId + 1;

        // The whole commit goes to one file; between commits, the readings may move to the other (see ReadingsFiles).
        _database.Readings.BetweenCommits();
        var catalog = _database.Readings.Active;
        DuckDBTransaction? transaction = null;
        try
        {
            FindRepeatedReadings(batches, outcomes);
            InsertReadings(batches, outcomes, catalog, commitId, ref transaction);
            if (transaction is not null)
            {
                AppendQuarantined(batches, outcomes, catalog, commitId);
                _series.AppendStaged(_writer, catalog);
                _sequences.AppendStaged(_writer, catalog);
                transaction.Commit();
            }
        }
        catch
        {
            // A failed commit may still have stored readings: a commit (the insert's own, or the transaction's) can fail
            // after the WAL is written. So its id is not used again, and its readings count as possibly stored: the
            // same readings sent again are looked up in the file rather than taken as new.
            Interlocked.Exchange(ref _lastCommitId, commitId);
            NoteLatest();
            _sequences.RolledBack();
            _series.Failed();
            _unjudged.Failed(batches, outcomes);
            throw;
        }
        finally
        {
            transaction?.Dispose();
        }

        // The commit is durable: nothing from here on may fail it.
        Interlocked.Exchange(ref _lastCommitId, commitId);
        NoteLatest();

        _sequences.Committed(_writer, catalog, commitId);
        _series.Committed();
        _unjudged.Committed(batches, outcomes);

        return commitId;
    }

    /// <summary>
    /// Stages the stored readings of every batch not a duplicate and inserts them, and notes in
    /// <paramref name="outcomes"/> what each stored. When the commit holds more than readings (a new series, a sequence
    /// number no reading carries, a quarantined reading), <paramref name="transaction"/> is opened before the insert, so
    /// all of it commits together; otherwise the insert commits the readings by itself (and, like any commit, may fail
    /// after its WAL is written: see Commit).
    /// </summary>
    private void InsertReadings(IReadOnlyList<DeviceBatch> batches, Span<BatchOutcome> outcomes, string catalog, long commitId, ref DuckDBTransaction? transaction)
    {
        _insert.Clear();
        for (var i = 0; i < batches.Count; i++)
        {
            if (outcomes[i].Outcome == CommitOutcome.Duplicate)
            {
                continue;
            }

            var batch = batches[i];
            var readings = batch.Readings.Span;
            Array.Clear(_seriesOfKind);
            var stored = _duplicates.Count == 0 && _conflicts.Count == 0 ? null : new List<VitalReading>(readings.Length);
            var conflicts = 0;
            for (var j = 0; j < readings.Length; j++)
            {
                var reading = readings[j];
                if (stored is not null)
                {
                    if (_duplicates.Contains((i, j)))
                    {
                        continue;
                    }

                    if (_conflicts.Contains((i, j)))
                    {
                        conflicts++;
                        continue;
                    }

                    stored.Add(reading);
                }

                ref var series = ref _seriesOfKind[(byte)reading.Kind];
                if (series == 0)
                {
                    series = _series.IdOf(batch.PatientId, batch.DeviceId, reading.Kind);
                }

                _insert.Add(series, reading.TimestampMs, reading.Value, batch.Sequence);
            }

            var storedCount = stored?.Count ?? readings.Length;
            if (storedCount == 0 && batch.Sequence != 0 && !_knownSequence[i])
            {
                _sequences.StageWithoutReadings(batch.DeviceId, batch.Sequence);
            }

            // The quarantined readings kept are settled in AppendQuarantined.
            outcomes[i] = stored is null || stored.Count == readings.Length
                ? new BatchOutcome(CommitOutcome.Stored, batch.Readings, 0, ReadOnlyMemory<VitalReading>.Empty)
                : new BatchOutcome(CommitOutcome.Stored, stored.ToArray(), readings.Length - stored.Count - conflicts, ReadOnlyMemory<VitalReading>.Empty, conflicts);
        }

        if (transaction is null && (_series.HasStaged || _sequences.HasStaged || HasQuarantined(batches, outcomes)))
        {
            transaction = _writer.BeginTransaction();
        }

        _insert.Insert(catalog, commitId);
    }

    /// <summary>
    /// Raises each device and vital's latest stored time to this flush's: readings at or before it are looked up.
    /// </summary>
    private void NoteLatest()
    {
        foreach (var (key, timestampMs) in _flushLatest)
        {
            _latest[key] = timestampMs;
        }
    }

    private static bool HasQuarantined(IReadOnlyList<DeviceBatch> batches, ReadOnlySpan<BatchOutcome> outcomes)
    {
        for (var i = 0; i < batches.Count; i++)
        {
            if (!batches[i].Quarantined.IsEmpty && outcomes[i].Outcome != CommitOutcome.Duplicate)
            {
                return true;
            }
        }

        return false;
    }

    private void AppendQuarantined(IReadOnlyList<DeviceBatch> batches, Span<BatchOutcome> outcomes, string catalog, long commitId)
    {
        // A quarantined reading (device, vital, time) is kept once, as a reading is: one sent again in a batch not
        // known by its number (SenML carries none; a failed commit forgets its numbers) is found, not kept twice, and
        // not named in the batch's outcome (its grain judged it the first time).
        var kept = StoredQuarantine(batches, outcomes);
        HashSet<(string DeviceId, VitalKind Kind, long TimestampMs)>? handedAgain = null;
        DuckDBAppender? appender = null;
        try
        {
            for (var i = 0; i < batches.Count; i++)
            {
                var batch = batches[i];
                if (batch.Quarantined.IsEmpty || outcomes[i].Outcome == CommitOutcome.Duplicate)
                {
                    continue;
                }

                var quarantined = batch.Quarantined.Span;
                List<VitalReading>? keptHere = null;
                for (var j = 0; j < quarantined.Length; j++)
                {
                    var reading = quarantined[j];
                    if (!kept.Add((batch.DeviceId, reading.Kind, reading.TimestampMs)))
                    {
                        if (_unjudged.Contains(batch.DeviceId, reading.Kind, reading.TimestampMs)
                            && (handedAgain ??= []).Add((batch.DeviceId, reading.Kind, reading.TimestampMs)))
                        {
                            // Kept by a commit that failed all the same: judged now (once), not kept again.
                            keptHere?.Add(reading);
                            continue;
                        }

                        // Kept before: the ones of the batch kept here are copied out (rarely: a batch sent again).
                        keptHere ??= [.. quarantined[..j]];
                        continue;
                    }

                    keptHere?.Add(reading);
                    if (_unjudged.Contains(batch.DeviceId, reading.Kind, reading.TimestampMs))
                    {
                        // Noted by a commit that failed before keeping it: handed on here, and once.
                        (handedAgain ??= []).Add((batch.DeviceId, reading.Kind, reading.TimestampMs));
                    }

                    appender ??= _writer.CreateAppender(catalog, "main", "quarantine");
                    appender.CreateRow()
                        .AppendValue(batch.PatientId)
                        .AppendValue(batch.DeviceId)
                        .AppendValue((byte)reading.Kind)
                        .AppendValue(Timestamps.ToDateTime(reading.TimestampMs))
                        .AppendValue(reading.Value)
                        .AppendValue("implausible")
                        .AppendValue(commitId)
                        .EndRow();
                }

                var outcome = outcomes[i] = outcomes[i] with { Quarantined = keptHere is null ? batch.Quarantined : keptHere.ToArray() };
                if (_knownSequence[i] && outcome.Quarantined.IsEmpty && outcome.Stored.IsEmpty && outcome.Conflicts == 0 && outcome.Duplicates == batch.Readings.Length)
                {
                    // Nothing new under a known number, its quarantined readings kept before too: a resend, answered as one.
                    outcomes[i] = BatchOutcome.DuplicateBatch(batch.Readings.Length);
                }
            }
        }
        finally
        {
            appender?.Dispose();
        }
    }

    /// <summary>The quarantined readings already kept of the devices whose batches in the flush bring some, in their time ranges.</summary>
    private HashSet<(string DeviceId, VitalKind Kind, long TimestampMs)> StoredQuarantine(IReadOnlyList<DeviceBatch> batches, Span<BatchOutcome> outcomes)
    {
        var ranges = new Dictionary<string, (long FromMs, long ToMs)>(StringComparer.Ordinal);
        for (var i = 0; i < batches.Count; i++)
        {
            if (outcomes[i].Outcome == CommitOutcome.Duplicate)
            {
                continue;
            }

            foreach (var reading in batches[i].Quarantined.Span)
            {
                ranges[batches[i].DeviceId] = ranges.TryGetValue(batches[i].DeviceId, out var range)
                    ? (Math.Min(range.FromMs, reading.TimestampMs), Math.Max(range.ToMs, reading.TimestampMs))
                    : (reading.TimestampMs, reading.TimestampMs);
            }
        }

        var stored = new HashSet<(string DeviceId, VitalKind Kind, long TimestampMs)>();
        foreach (var (deviceId, (fromMs, toMs)) in ranges)
        {
            using var query = _writer.CreateCommand();
            query.CommandText = "SELECT kind, epoch_ms(ts) FROM all_quarantine WHERE device_id = $1 AND ts BETWEEN $2 AND $3";
            query.Parameters.Add(new DuckDBParameter(deviceId));
            query.Parameters.Add(new DuckDBParameter(Timestamps.ToDateTime(fromMs)));
            query.Parameters.Add(new DuckDBParameter(Timestamps.ToDateTime(toMs)));
            using var reader = query.ExecuteReader();
            while (reader.Read())
            {
                stored.Add((deviceId, (VitalKind)reader.GetByte(0), reader.GetInt64(1)));
            }
        }

        return stored;
    }

    public Task<IReadOnlyList<QuarantinedReading>> ReadQuarantineAsync(string deviceId, int limit, CancellationToken cancellationToken = default) =>
        Task.Run<IReadOnlyList<QuarantinedReading>>(() =>
        {
            using var connection = _database.OpenConnection();
            using var command = connection.CreateCommand();
            command.CommandText = "SELECT kind, epoch_ms(ts), value, reason FROM all_quarantine WHERE device_id = $1 ORDER BY commit_id DESC, ts DESC LIMIT $2";
            command.Parameters.Add(new DuckDBParameter(deviceId));
            command.Parameters.Add(new DuckDBParameter(limit));
            using var reader = command.ExecuteReader();
            var readings = new List<QuarantinedReading>();
            while (reader.Read())
            {
                readings.Add(new QuarantinedReading(new VitalReading((VitalKind)reader.GetByte(0), reader.GetInt64(1), reader.GetDouble(2)), reader.GetString(3)));
            }

            return readings;
        }, cancellationToken);

    /// <summary>
    /// Collects in <see cref="_duplicates"/> the readings that repeat one already stored or one earlier in this flush, in
    /// <see cref="_conflicts"/> those that give another value for such a device, vital and time, and marks as duplicate
    /// the batches whose sequence number was committed before and that bring nothing new. A known
    /// sequence number alone stores nothing twice but loses nothing either: a device that starts its numbering over
    /// (a reinstalled app) still has its new readings stored.
    /// </summary>
    private void FindRepeatedReadings(IReadOnlyList<DeviceBatch> batches, Span<BatchOutcome> outcomes)
    {
        _flushLatest.Clear();
        _candidates.Clear();
        _duplicates.Clear();
        _conflicts.Clear();
        _knownSequence.Clear();
        _kindsOfBatch.Clear();
        for (var i = 0; i < batches.Count; i++)
        {
            var batch = batches[i];
            outcomes[i] = new BatchOutcome(CommitOutcome.Stored, batch.Readings, 0, ReadOnlyMemory<VitalReading>.Empty);

            // Known: committed before, or carried by an earlier batch of this flush.
            var known = batch.Sequence != 0 && _sequences.IsCommitted(batch.DeviceId, batch.Sequence);
            _knownSequence.Add(known);
            if (batch.Sequence != 0 && !known)
            {
                _sequences.Stage(batch.DeviceId, batch.Sequence);
            }

            // A reading is a candidate repeat unless it is later than every one of its device and vital before it.
            if (++_batchNumber == int.MaxValue)
            {
                Array.Clear(_timesOfKind);
                _batchNumber = 1;
            }

            var readings = batch.Readings.Span;
            for (var j = 0; j < readings.Length; j++)
            {
                ref var times = ref _timesOfKind[(byte)readings[j].Kind];
                if (times.Batch != _batchNumber)
                {
                    var key = (batch.DeviceId, readings[j].Kind);
                    var before = _flushLatest.TryGetValue(key, out var inFlush) ? inFlush : _latest.GetValueOrDefault(key, long.MinValue);
                    times = (before, before, _batchNumber);
                    _kindsOfBatch.Add(readings[j].Kind);
                }

                if (readings[j].TimestampMs > times.Latest)
                {
                    times.Latest = readings[j].TimestampMs;
                }
                else
                {
                    _candidates.Add((i, j));
                }
            }

            foreach (var kind in _kindsOfBatch)
            {
                var (before, latest, _) = _timesOfKind[(byte)kind];
                if (latest > before)
                {
                    _flushLatest[(batch.DeviceId, kind)] = latest;
                }
            }

            _kindsOfBatch.Clear();
        }

        if (_candidates.Count > 0)
        {
            MarkDuplicates(batches);
        }

        var duplicatesPerBatch = _duplicates.Count == 0 ? null : _duplicates.CountBy(d => d.Batch).ToDictionary();
        for (var i = 0; i < batches.Count; i++)
        {
            var batch = batches[i];
            // A batch bringing implausible readings is decided once they are looked up (AppendQuarantined): its number
            // could be reused (an app installed again) with new ones.
            if (_knownSequence[i] && batch.Quarantined.IsEmpty && (duplicatesPerBatch?.GetValueOrDefault(i) ?? 0) == batch.Readings.Length)
            {
                outcomes[i] = BatchOutcome.DuplicateBatch(batch.Readings.Length);
            }
        }
    }

    /// <summary>
    /// Looks the flush's candidate readings up in the store by their exact (device, vital, time), through a temporary
    /// table joined to the readings, so only matches come back (with their values) however wide the candidates' time
    /// range; then walks each such device's readings of the flush in order, so a repeat within the flush counts too. A
    /// candidate with the value stored (or first sent in the flush) is a duplicate; with another, a conflict: the first
    /// value stands.
    /// </summary>
    private void MarkDuplicates(IReadOnlyList<DeviceBatch> batches)
    {
        using (var clear = _writer.CreateCommand())
        {
            clear.CommandText = "CREATE TEMP TABLE IF NOT EXISTS dedup_candidates (n INTEGER, device_id VARCHAR, kind UTINYINT, ts TIMESTAMP); DELETE FROM dedup_candidates;";
            clear.ExecuteNonQuery();
        }

        using (var appender = _writer.CreateAppender("dedup_candidates"))
        {
            for (var n = 0; n < _candidates.Count; n++)
            {
                var (i, j) = _candidates[n];
                var reading = batches[i].Readings.Span[j];
                appender.CreateRow()
                    .AppendValue(n)
                    .AppendValue(batches[i].DeviceId)
                    .AppendValue((byte)reading.Kind)
                    .AppendValue(Timestamps.ToDateTime(reading.TimestampMs))
                    .EndRow();
            }
        }

        // The candidates' times bound the readings scanned: DuckDB skips the row groups outside a range by their zone
        // maps, so a few repeated readings cost a look at the recent part of the table, not a join over all of it. The
        // times go in stretches split at their widest gaps (over an hour), each looked up on its own: one device
        // resending a month-old batch beside another's reading a moment out of order scans two small ranges, not the
        // month between them. Each candidate found comes back with the value stored (one, or one per patient for a
        // device bound to another since): the same value is a repeat, none of them a conflict.
        var found = new bool[_candidates.Count];
        var same = new bool[_candidates.Count];
        foreach (var (fromMs, toMs) in CandidateStretches(batches))
        {
            using var query = _writer.CreateCommand();
            query.CommandText = """
                SELECT c.n, r.value FROM dedup_candidates c
                JOIN all_series s ON s.device_id = c.device_id AND s.kind = c.kind
                JOIN all_readings r ON r.series_id = s.series_id AND r.ts = c.ts
                WHERE c.ts BETWEEN $1 AND $2 AND r.ts BETWEEN $1 AND $2
                """;
            query.Parameters.Add(new DuckDBParameter(Timestamps.ToDateTime(fromMs)));
            query.Parameters.Add(new DuckDBParameter(Timestamps.ToDateTime(toMs)));
            using var reader = query.ExecuteReader();
            while (reader.Read())
            {
                var n = reader.GetInt32(0);
                var (i, j) = _candidates[n];
                found[n] = true;
                var sent = batches[i].Readings.Span[j];
                same[n] |= BatchOutcome.SameValue(sent.Kind, reader.GetDouble(1), sent.Value);
            }
        }

        var candidates = new Dictionary<(int Batch, int Reading), int>(_candidates.Count);
        for (var n = 0; n < _candidates.Count; n++)
        {
            candidates[_candidates[n]] = n;
        }

        var devices = _candidates.Select(c => batches[c.Batch].DeviceId).ToHashSet(StringComparer.Ordinal);
        var seen = new Dictionary<(string DeviceId, VitalKind Kind, long TimestampMs), double>();
        for (var i = 0; i < batches.Count; i++)
        {
            var batch = batches[i];
            if (!devices.Contains(batch.DeviceId))
            {
                continue;
            }

            var readings = batch.Readings.Span;
            for (var j = 0; j < readings.Length; j++)
            {
                var (key, sent) = ((batch.DeviceId, readings[j].Kind, readings[j].TimestampMs), readings[j].Value);
                var firstInFlush = seen.TryAdd(key, sent);
                if (!candidates.TryGetValue((i, j), out var n))
                {
                    continue;
                }

                if (found[n])
                {
                    (same[n] ? _duplicates : _conflicts).Add((i, j));
                }
                else if (!firstInFlush)
                {
                    (BatchOutcome.SameValue(key.Kind, seen[key], sent) ? _duplicates : _conflicts).Add((i, j));
                }
            }
        }
    }

    /// <summary>
    /// The candidates' times as at most <see cref="MaxLookupStretches"/> stretches, split at the widest gaps between
    /// them of <see cref="MinLookupGapMs"/> or more.
    /// </summary>
    private List<(long FirstMs, long LastMs)> CandidateStretches(IReadOnlyList<DeviceBatch> batches)
    {
        var times = new long[_candidates.Count];
        for (var k = 0; k < times.Length; k++)
        {
            var (i, j) = _candidates[k];
            times[k] = batches[i].Readings.Span[j].TimestampMs;
        }

        Array.Sort(times);
        return TimeStretches.Of(times, MinLookupGapMs, MaxLookupStretches);
    }

    public Task<RawAggregate> AggregateAsync(string patientId, long fromMs, long toMs, Resolution resolution, CancellationToken cancellationToken = default) =>
        _aggregates.ReadAsync(patientId, fromMs, toMs, resolution, cancellationToken);

    /// <summary>The aggregates of <paramref name="patientIds"/> over one span, in one query; a patient without readings is left out.</summary>
    private Dictionary<string, RawAggregate> Aggregate(IReadOnlyList<string> patientIds, long fromMs, long toMs, Resolution resolution)
    {
        using var connection = _database.OpenConnection();
        using var command = connection.CreateCommand();
        // Each row names its patient by place in the list (from 1), worked out once per series: no string per row.
        var patients = string.Join(", ", patientIds.Select((_, i) => $"${i + 4}"));
        command.CommandText = $"""
            SELECT s.patient, s.kind, (epoch_ms(r.ts) // $3) * $3 AS start, count(*), sum(r.value), min(r.value), max(r.value),
                   sum(r.value * r.value), arg_max(r.value, r.ts), epoch_ms(max(r.ts)), max(r.commit_id)
            FROM all_readings r
            JOIN (SELECT series_id, kind, list_position([{patients}], patient_id) AS patient FROM all_series WHERE patient_id IN ({patients})) s
                USING (series_id)
            WHERE r.ts >= $1 AND r.ts < $2
            GROUP BY 1, 2, 3
            ORDER BY 1, 2, 3
            """;
        command.Parameters.Add(new DuckDBParameter(Timestamps.ToDateTime(fromMs)));
        command.Parameters.Add(new DuckDBParameter(Timestamps.ToDateTime(toMs)));
        command.Parameters.Add(new DuckDBParameter(resolution.Milliseconds()));
        foreach (var patientId in patientIds)
        {
            command.Parameters.Add(new DuckDBParameter(patientId));
        }

        using var reader = command.ExecuteReader();
        var aggregates = new Dictionary<string, RawAggregate>(StringComparer.Ordinal);
        var patient = 0;
        var windows = new List<KindWindow>();
        var highestCommitId = 0L;
        while (reader.Read())
        {
            var rowPatient = reader.GetInt32(0);
            if (rowPatient != patient)
            {
                if (patient != 0)
                {
                    aggregates[patientIds[patient - 1]] = new RawAggregate(windows, highestCommitId);
                }

                (patient, windows, highestCommitId) = (rowPatient, [], 0L);
            }

            highestCommitId = Math.Max(highestCommitId, reader.GetInt64(10));
            windows.Add(new KindWindow(
                (VitalKind)reader.GetByte(1),
                new RollupWindow(
                    reader.GetInt64(2),
                    reader.GetInt64(3),
                    reader.GetDouble(4),
                    reader.GetDouble(5),
                    reader.GetDouble(6),
                    reader.GetDouble(7),
                    reader.GetDouble(8),
                    reader.GetInt64(9))));
        }

        if (patient != 0)
        {
            aggregates[patientIds[patient - 1]] = new RawAggregate(windows, highestCommitId);
        }

        return aggregates;
    }

    public Task<IReadOnlyList<StoredReading>> ReadAsync(string patientId, VitalKind kind, long fromMs, long toMs, int limit, CancellationToken cancellationToken = default) =>
        Task.Run<IReadOnlyList<StoredReading>>(() =>
        {
            using var connection = _database.OpenConnection();
            using var command = connection.CreateCommand();
            command.CommandText = """
                SELECT s.device_id, s.kind, epoch_ms(r.ts), r.value FROM all_readings r JOIN all_series s USING (series_id)
                WHERE s.patient_id = $1 AND s.kind = $2 AND r.ts >= $3 AND r.ts < $4
                ORDER BY r.ts, s.device_id LIMIT $5
                """;
            command.Parameters.Add(new DuckDBParameter(patientId));
            command.Parameters.Add(new DuckDBParameter((byte)kind));
            command.Parameters.Add(new DuckDBParameter(Timestamps.ToDateTime(fromMs)));
            command.Parameters.Add(new DuckDBParameter(Timestamps.ToDateTime(toMs)));
            command.Parameters.Add(new DuckDBParameter(limit));
            return ReadAll(command);
        }, cancellationToken);

    /// <remarks>
    /// Every patient's readings lie together by time, so a read over a long range scans all of them: the range is walked
    /// back from its end a stretch at a time (<see cref="TimeStretches.Back"/>), for the vitals the patient has a series
    /// of at all and has not yet their fill, so the newest few of a patient sending now cost about a day's scan.
    /// </remarks>
    public Task<IReadOnlyList<StoredReading>> ReadLatestAsync(string patientId, IReadOnlyCollection<VitalKind> kinds, long fromMs, long toMs, int perKind, CancellationToken cancellationToken = default) =>
        Task.Run<IReadOnlyList<StoredReading>>(() =>
        {
            using var connection = _database.OpenConnection();
            var found = new SortedDictionary<VitalKind, List<StoredReading>>();
            if (kinds.Count > 0)
            {
                using var present = connection.CreateCommand();
                present.CommandText = $"SELECT DISTINCT kind FROM all_series WHERE patient_id = $1 AND kind IN ({KindList(kinds)})";
                present.Parameters.Add(new DuckDBParameter(patientId));
                using var reader = present.ExecuteReader();
                while (reader.Read())
                {
                    found[(VitalKind)reader.GetByte(0)] = [];
                }
            }

            foreach (var (start, end) in TimeStretches.Back(fromMs, toMs))
            {
                var wanted = found.Where(entry => entry.Value.Count < perKind).Select(entry => entry.Key).ToList();
                if (wanted.Count == 0 || cancellationToken.IsCancellationRequested)
                {
                    break;
                }

                using var command = connection.CreateCommand();
                command.CommandText = $"""
                    SELECT s.device_id, s.kind, epoch_ms(r.ts), r.value FROM all_readings r JOIN all_series s USING (series_id)
                    WHERE s.patient_id = $1 AND s.kind IN ({KindList(wanted)}) AND r.ts >= $2 AND r.ts < $3
                    QUALIFY row_number() OVER (PARTITION BY s.kind ORDER BY r.ts DESC, s.device_id) <= $4
                    ORDER BY s.kind, r.ts DESC, s.device_id
                    """;
                command.Parameters.Add(new DuckDBParameter(patientId));
                command.Parameters.Add(new DuckDBParameter(Timestamps.ToDateTime(start)));
                command.Parameters.Add(new DuckDBParameter(Timestamps.ToDateTime(end)));
                command.Parameters.Add(new DuckDBParameter((long)perKind));
                foreach (var reading in ReadAll(command))
                {
                    var newest = found[reading.Kind];
                    if (newest.Count < perKind)
                    {
                        newest.Add(reading);
                    }
                }
            }

            return [.. found.Values.SelectMany(newest => newest)];
        }, cancellationToken);

    public async IAsyncEnumerable<StoredReading> StreamAsync(
        string patientId, IReadOnlyCollection<VitalKind> kinds, long fromMs, long toMs, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        // Pages by (time, kind, device), which is unique per reading: each page is one short query, and no connection
        // stays open while the caller writes to a slow client.
        const int PageSize = 10_000;
        var after = (TimestampMs: fromMs - 1, Kind: (byte)0, DeviceId: string.Empty);
        while (true)
        {
            var cursor = after;
            var page = await Task.Run(() =>
            {
                using var connection = _database.OpenConnection();
                using var command = connection.CreateCommand();
                command.CommandText = $"""
                    SELECT s.device_id, s.kind, epoch_ms(r.ts), r.value FROM all_readings r JOIN all_series s USING (series_id)
                    WHERE s.patient_id = $1 AND s.kind IN ({KindList(kinds)}) AND r.ts >= $2 AND r.ts < $3
                      AND (r.ts > $4 OR (r.ts = $4 AND (s.kind > $5 OR (s.kind = $5 AND s.device_id > $6))))
                    ORDER BY r.ts, s.kind, s.device_id LIMIT {PageSize}
                    """;
                command.Parameters.Add(new DuckDBParameter(patientId));

                // From the cursor on, as a bound of the readings' own: the scan skips what earlier pages read (by the
                // row groups' time ranges), where the cursor's condition alone, across both tables, could not.
                command.Parameters.Add(new DuckDBParameter(Timestamps.ToDateTime(Math.Max(fromMs, cursor.TimestampMs))));
                command.Parameters.Add(new DuckDBParameter(Timestamps.ToDateTime(toMs)));
                command.Parameters.Add(new DuckDBParameter(Timestamps.ToDateTime(cursor.TimestampMs)));
                command.Parameters.Add(new DuckDBParameter(cursor.Kind));
                command.Parameters.Add(new DuckDBParameter(cursor.DeviceId));
                return ReadAll(command);
            }, cancellationToken);

            foreach (var reading in page)
            {
                yield return reading;
            }

            if (page.Count < PageSize)
            {
                yield break;
            }

            var last = page[^1];
            after = (last.TimestampMs, (byte)last.Kind, last.DeviceId);
        }
    }

    /// <remarks>
    /// In transactions of about <see cref="DeletionChunkRows"/> readings each, by stretches of time sized from how many
    /// the range holds, the stop asked for checked between them: one DELETE of a day of a busy server's readings (or of
    /// months, the first time a shorter retention runs) would hold a transaction open for minutes, its WAL growing,
    /// and the file's checkpoints (and so, in the end, commits) waiting for it.
    /// </remarks>
    public Task<long> DeleteBeforeAsync(long beforeMs, CancellationToken cancellationToken = default) =>
        DeleteBeforeAsync(beforeMs, DeletionChunkRows, cancellationToken);

    /// <summary>Deletes the readings before <paramref name="beforeMs"/> in transactions of about <paramref name="chunkRows"/> each.</summary>
    internal Task<long> DeleteBeforeAsync(long beforeMs, long chunkRows, CancellationToken cancellationToken) =>
        Task.Run(() =>
        {
            using var connection = _database.OpenConnection();

            // Deleted readings take their batch numbers with them until the next fold, which is harmless: a resend of such
            // a batch is a duplicate only while all its readings are stored, and they are not.
            var deleted = 0L;
            foreach (var catalog in _database.Readings.Catalogs)
            {
                foreach (var table in (ReadOnlySpan<string>)["readings", "quarantine"])
                {
                    var name = $"{DuckDbDatabase.Quote(catalog)}.main.{table}";
                    long oldestMs = 0, rows = 0;
                    DuckDbValues.ReadRow(connection, $"SELECT coalesce(epoch_ms(min(ts)), 0), count(*) FROM {name} WHERE ts < $1", [Timestamps.ToDateTime(beforeMs)],
                        reader => (oldestMs, rows) = (reader.GetInt64(0), reader.GetInt64(1)));
                    if (rows == 0)
                    {
                        continue;
                    }

                    var stepMs = Math.Max(1_000, (long)((double)(beforeMs - oldestMs) * chunkRows / rows) + 1);
                    using var command = connection.CreateCommand();
                    command.CommandText = $"DELETE FROM {name} WHERE ts >= $1 AND ts < $2";
                    for (var fromMs = oldestMs; fromMs < beforeMs; fromMs += stepMs)
                    {
                        cancellationToken.ThrowIfCancellationRequested();
                        command.Parameters.Clear();
                        command.Parameters.Add(new DuckDBParameter(Timestamps.ToDateTime(fromMs)));
                        command.Parameters.Add(new DuckDBParameter(Timestamps.ToDateTime(Math.Min(beforeMs, fromMs + stepMs))));
                        deleted += command.ExecuteNonQuery();
                    }
                }
            }

            return deleted;
        }, cancellationToken);

    private static string KindList(IReadOnlyCollection<VitalKind> kinds) =>
        kinds.Count == 0 ? "NULL" : string.Join(", ", kinds.Select(kind => ((byte)kind).ToString(System.Globalization.CultureInfo.InvariantCulture)));

    private static List<StoredReading> ReadAll(DuckDBCommand command)
    {
        using var reader = command.ExecuteReader();
        var readings = new List<StoredReading>();
        while (reader.Read())
        {
            readings.Add(new StoredReading(reader.GetString(0), (VitalKind)reader.GetByte(1), reader.GetInt64(2), reader.GetDouble(3)));
        }

        return readings;
    }

    public void Dispose()
    {
        _insert.Dispose();
        _writer.Dispose();
    }
}
