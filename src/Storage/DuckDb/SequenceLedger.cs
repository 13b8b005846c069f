using DuckDB.NET.Data;

namespace Telemetry.Storage.DuckDb;

/// <summary>
/// Which batch sequence numbers every device has committed. A batch is a duplicate exactly when its number was
/// committed before, so a batch that failed to commit is stored when it is sent again even if later batches
/// committed meanwhile. New numbers are appended to an unindexed log in the commit's own transaction (an upsert per
/// device cost about 5 ms of every commit); the log is folded into one row per range when it opens and every
/// <see cref="FoldEvery"/> appended rows.
/// </summary>
internal sealed class SequenceLedger
{
    public const int FoldEvery = 100_000;

    private readonly Dictionary<string, SequenceRanges> _committed = new(StringComparer.Ordinal);
    private readonly HashSet<(string DeviceId, ulong Sequence)> _staged = [];
    private int _appendedSinceFold;

    /// <summary>Reads and folds the log.</summary>
    public SequenceLedger(DuckDBConnection connection)
    {
        using (var load = connection.CreateCommand())
        {
            load.CommandText = "SELECT device_id, first_seq, last_seq FROM device_sequences";
            using var reader = load.ExecuteReader();
            while (reader.Read())
            {
                Ranges(reader.GetString(0)).Add(reader.GetFieldValue<ulong>(1), reader.GetFieldValue<ulong>(2));
            }
        }

        Fold(connection);
    }

    /// <summary>True when the device committed this number before, or a batch staged in the current commit has it.</summary>
    public bool IsCommitted(string deviceId, ulong sequence) =>
        _staged.Contains((deviceId, sequence)) || (_committed.TryGetValue(deviceId, out var ranges) && ranges.Contains(sequence));

    /// <summary>Notes a number the current commit is storing.</summary>
    public void Stage(string deviceId, ulong sequence) => _staged.Add((deviceId, sequence));

    /// <summary>Appends the staged numbers to the log, inside the commit's transaction.</summary>
    public void AppendStaged(DuckDBConnection connection)
    {
        if (_staged.Count == 0)
        {
            return;
        }

        using var appender = connection.CreateAppender("device_sequences");
        foreach (var (deviceId, sequence) in _staged)
        {
            appender.CreateRow().AppendValue(deviceId).AppendValue(sequence).AppendValue(sequence).EndRow();
        }
    }

    /// <summary>The commit went through: the staged numbers are committed.</summary>
    public void Committed(DuckDBConnection connection)
    {
        foreach (var (deviceId, sequence) in _staged)
        {
            Ranges(deviceId).Add(sequence);
        }

        _appendedSinceFold += _staged.Count;
        _staged.Clear();
        if (_appendedSinceFold >= FoldEvery)
        {
            try
            {
                Fold(connection);
            }
            catch (Exception)
            {
                // The log is still complete, only longer; the next commit tries again.
            }
        }
    }

    /// <summary>The commit failed: nothing staged was committed.</summary>
    public void RolledBack() => _staged.Clear();

    private SequenceRanges Ranges(string deviceId)
    {
        if (!_committed.TryGetValue(deviceId, out var ranges))
        {
            ranges = new SequenceRanges();
            _committed[deviceId] = ranges;
        }

        return ranges;
    }

    /// <summary>Rewrites the log as one row per committed range.</summary>
    private void Fold(DuckDBConnection connection)
    {
        using var transaction = connection.BeginTransaction();
        using (var delete = connection.CreateCommand())
        {
            delete.CommandText = "DELETE FROM device_sequences";
            delete.ExecuteNonQuery();
        }

        using (var appender = connection.CreateAppender("device_sequences"))
        {
            foreach (var (deviceId, ranges) in _committed)
            {
                foreach (var (first, last) in ranges.Ranges)
                {
                    appender.CreateRow().AppendValue(deviceId).AppendValue(first).AppendValue(last).EndRow();
                }
            }
        }

        transaction.Commit();
        _appendedSinceFold = 0;
    }
}
