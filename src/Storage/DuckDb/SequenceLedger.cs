using DuckDB.NET.Data;
using Microsoft.Extensions.Logging;

namespace Telemetry.Storage.DuckDb;

/// <summary>
/// Which batch sequence numbers every device has committed. A batch is a duplicate exactly when its number was
/// committed before, so a batch that failed to commit is stored when it is sent again even if later batches
/// committed meanwhile. A batch's number is written on each reading it stores (the <c>seq</c> column), in the commit's
/// own transaction, so it costs no statement of its own; only a batch that stores no reading (all repeats, or only
/// quarantined ones) appends its number to the <c>device_sequences</c> log. Every <see cref="FoldEvery"/> numbers, and
/// when the file opens, the numbers are folded into one log row per range, with the commit folded through in
/// <c>sequence_folds</c>: opening the file reads the log and the readings committed after that commit. A store whose
/// readings live elsewhere (InfluxDB, VictoriaMetrics) logs every number.
/// </summary>
internal sealed partial class SequenceLedger
{
    public const int FoldEvery = 100_000;

    /// <summary>
    /// The most ranges kept across the fleet (16 bytes each): a device's share is this over the devices known, between
    /// <see cref="MinRangesPerDevice"/> and <see cref="SequenceRanges.MaxRanges"/>. A device sending in order needs
    /// one; a fleet numbering its batches by a clock (every batch a gap) would otherwise keep 4,096 a device.
    /// </summary>
    public const int MaxTotalRanges = 1_048_576;

    /// <summary>The fewest ranges a device keeps however large the fleet: room for a few batches waiting to be sent again.</summary>
    public const int MinRangesPerDevice = 4;

    private readonly Dictionary<string, SequenceRanges> _committed = new(StringComparer.Ordinal);
    private readonly HashSet<(string DeviceId, ulong Sequence)> _staged = [];
    private readonly List<(string DeviceId, ulong Sequence)> _withoutReadings = [];
    private readonly bool _readingsCarrySequences;
    private readonly int _maxTotalRanges;
    private readonly ILogger _logger;
    private int _stagedSinceFold;

    /// <summary>
    /// Reads the log and, when <paramref name="readingsCarrySequences"/>, the numbers on readings committed since it was
    /// last folded; then folds them.
    /// </summary>
    public SequenceLedger(DuckDBConnection connection, string catalog, long lastCommitId, bool readingsCarrySequences, ILogger? logger = null, int maxTotalRanges = MaxTotalRanges)
    {
        _logger = logger ?? Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;
        _readingsCarrySequences = readingsCarrySequences;
        _maxTotalRanges = maxTotalRanges;
        using (var load = connection.CreateCommand())
        {
            load.CommandText = "SELECT device_id, first_seq, last_seq FROM all_device_sequences";
            using var reader = load.ExecuteReader();
            while (reader.Read())
            {
                Ranges(reader.GetString(0)).Add(reader.GetFieldValue<ulong>(1), reader.GetFieldValue<ulong>(2));
            }
        }

        if (readingsCarrySequences)
        {
            using var recent = connection.CreateCommand();
            recent.CommandText = """
                SELECT DISTINCT s.device_id, r.seq FROM all_readings r JOIN all_series s USING (series_id)
                WHERE r.commit_id > (SELECT coalesce(max(commit_id), 0) FROM all_sequence_folds) AND r.seq <> 0
                """;
            using var reader = recent.ExecuteReader();
            while (reader.Read())
            {
                Ranges(reader.GetString(0)).Add(reader.GetFieldValue<ulong>(1));
            }
        }

        Fold(connection, catalog, lastCommitId);
    }

    /// <summary>True when the device committed this number before, or a batch staged in the current commit has it.</summary>
    public bool IsCommitted(string deviceId, ulong sequence) =>
        _staged.Contains((deviceId, sequence)) || (_committed.TryGetValue(deviceId, out var ranges) && ranges.Contains(sequence));

    /// <summary>Notes a number the current commit is storing (on its readings, or see <see cref="StageWithoutReadings"/>).</summary>
    public void Stage(string deviceId, ulong sequence) => _staged.Add((deviceId, sequence));

    /// <summary>Notes a staged number whose batch stores no reading to carry it: it goes to the log instead.</summary>
    public void StageWithoutReadings(string deviceId, ulong sequence) => _withoutReadings.Add((deviceId, sequence));

    /// <summary>True when numbers wait to be appended to the log with the current commit (see <see cref="AppendStaged"/>).</summary>
    public bool HasStaged => ToAppend.Count > 0;

    private IReadOnlyCollection<(string DeviceId, ulong Sequence)> ToAppend => _readingsCarrySequences ? _withoutReadings : _staged;

    /// <summary>Appends the numbers no reading carries to the log of the commit's file, inside its transaction.</summary>
    public void AppendStaged(DuckDBConnection connection, string catalog)
    {
        var numbers = ToAppend;
        if (numbers.Count == 0)
        {
            return;
        }

        using var appender = connection.CreateAppender(catalog, "main", "device_sequences");
        foreach (var (deviceId, sequence) in numbers)
        {
            appender.CreateRow().AppendValue(deviceId).AppendValue(sequence).AppendValue(sequence).EndRow();
        }
    }

    /// <summary>
    /// The commit (<paramref name="commitId"/>) went through: the staged numbers are committed. A fold, when due, goes
    /// to the file the commit went to (<paramref name="catalog"/>), the one not being checkpointed.
    /// </summary>
    public void Committed(DuckDBConnection connection, string catalog, long commitId)
    {
        foreach (var (deviceId, sequence) in _staged)
        {
            Ranges(deviceId).Add(sequence, sequence, RangesPerDevice);
        }

        _stagedSinceFold += _staged.Count;
        _staged.Clear();
        _withoutReadings.Clear();
        if (_stagedSinceFold >= FoldEvery)
        {
            try
            {
                Fold(connection, catalog, commitId);
            }
            catch (Exception exception)
            {
                // The log and the readings still hold every number: tried again once as many more are staged, not at
                // every commit (each try a transaction, on the commit loop, before its acks).
                _stagedSinceFold = 0;
                LogFoldFailed(_logger, exception, FoldEvery);
            }
        }
    }

    /// <summary>The commit failed: nothing staged was committed.</summary>
    public void RolledBack()
    {
        _staged.Clear();
        _withoutReadings.Clear();
    }

    /// <summary>
    /// Each device's share of the fleet's ranges (<see cref="MaxTotalRanges"/>). A device past it is cut back as it commits, and every device
    /// at each fold: the fleet keeps no more than the total and what was committed since the last fold. A number
    /// forgotten is taken for new if its batch comes again, and its readings are still stored once by the
    /// reading-level check.
    /// </summary>
    public int RangesPerDevice => Math.Clamp(_maxTotalRanges / Math.Max(1, _committed.Count), MinRangesPerDevice, SequenceRanges.MaxRanges);

    /// <summary>The ranges kept across the fleet.</summary>
    public long RangeCount => _committed.Values.Sum(ranges => (long)ranges.Ranges.Count);

    private SequenceRanges Ranges(string deviceId)
    {
        if (!_committed.TryGetValue(deviceId, out var ranges))
        {
            ranges = new SequenceRanges();
            _committed[deviceId] = ranges;
        }

        return ranges;
    }

    /// <summary>
    /// Rewrites one file's log as one row per committed range, folded through <paramref name="commitId"/>. The other
    /// files' logs keep their rows until a fold there (the database file's, from before the readings files, for good):
    /// every one of them is a committed number, so reading every log and the readings after the latest fold in any
    /// still finds every number.
    /// </summary>
    private void Fold(DuckDBConnection connection, string catalog, long commitId)
    {
        var file = DuckDbDatabase.Quote(catalog);
        using var transaction = connection.BeginTransaction();
        using (var delete = connection.CreateCommand())
        {
            delete.CommandText = $"DELETE FROM {file}.main.device_sequences; DELETE FROM {file}.main.sequence_folds;";
            delete.ExecuteNonQuery();
        }

        using (var appender = connection.CreateAppender(catalog, "main", "device_sequences"))
        {
            var perDevice = RangesPerDevice;
            foreach (var (deviceId, ranges) in _committed)
            {
                ranges.TrimTo(perDevice);
                foreach (var (first, last) in ranges.Ranges)
                {
                    appender.CreateRow().AppendValue(deviceId).AppendValue(first).AppendValue(last).EndRow();
                }
            }
        }

        using (var folded = connection.CreateCommand())
        {
            folded.CommandText = $"INSERT INTO {file}.main.sequence_folds VALUES ($1)";
            folded.Parameters.Add(new DuckDBParameter(commitId));
            folded.ExecuteNonQuery();
        }

        transaction.Commit();
        _stagedSinceFold = 0;
    }

    /// <summary>Adds the <c>seq</c> column to a file's readings from before it (their numbers are in the log).</summary>
    public static void AddSequenceColumn(DuckDBConnection connection)
    {
        if (DuckDbDatabase.HasColumn(connection, "readings", "seq"))
        {
            return;
        }

        using var command = connection.CreateCommand();
        command.CommandText = "ALTER TABLE readings ADD COLUMN seq UBIGINT DEFAULT 0; ALTER TABLE readings ALTER COLUMN seq SET NOT NULL;";
        command.ExecuteNonQuery();
    }

    [LoggerMessage(EventId = 2230, Level = LogLevel.Warning, Message = "Folding the devices' batch numbers failed; resends are still recognised, from the log, which grows until the next fold is tried, {Numbers} numbers later")]
    private static partial void LogFoldFailed(ILogger logger, Exception exception, int numbers);
}
