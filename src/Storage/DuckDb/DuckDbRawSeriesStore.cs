using DuckDB.NET.Data;
using Telemetry.Core.Readings;
using Telemetry.Core.Rollups;
using Telemetry.Core.Storage;
using Telemetry.Core.Vitals;

namespace Telemetry.Storage.DuckDb;

/// <summary>
/// The raw series in the embedded DuckDB file. Commits append every batch of a flush through one appender in one
/// transaction, together with the sequence numbers of the batches they store, so a batch and the record that it was
/// committed become durable together and a resent batch is recognised after any restart.
/// </summary>
public sealed class DuckDbRawSeriesStore : IRawSeriesStore, IDisposable
{
    private readonly DuckDbDatabase _database;
    private readonly DuckDBConnection _writer;
    private readonly SequenceLedger _sequences;
    private long _lastCommitId;

    public DuckDbRawSeriesStore(DuckDbDatabase database)
    {
        _database = database;
        _writer = database.OpenConnection();
        _sequences = new SequenceLedger(_writer);
        using var last = _writer.CreateCommand();
        last.CommandText = "SELECT coalesce(max(commit_id), 0) FROM readings";
        _lastCommitId = Convert.ToInt64(last.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture);
    }

    public long Commit(IReadOnlyList<DeviceBatch> batches, Span<CommitOutcome> outcomes)
    {
        var commitId = _lastCommitId + 1;
        try
        {
            using var transaction = _writer.BeginTransaction();

            // The appender flushes when disposed, and a failed flush must not be followed by a commit: dispose it first.
            using (var appender = _writer.CreateAppender("readings"))
            {
                for (var i = 0; i < batches.Count; i++)
                {
                    var batch = batches[i];
                    if (batch.Sequence != 0 && _sequences.IsCommitted(batch.DeviceId, batch.Sequence))
                    {
                        outcomes[i] = CommitOutcome.Duplicate;
                        continue;
                    }

                    if (batch.Sequence != 0)
                    {
                        _sequences.Stage(batch.DeviceId, batch.Sequence);
                    }

                    foreach (var reading in batch.Readings.Span)
                    {
                        appender.CreateRow()
                            .AppendValue(batch.PatientId)
                            .AppendValue(batch.DeviceId)
                            .AppendValue((byte)reading.Kind)
                            .AppendValue(Timestamps.ToDateTime(reading.TimestampMs))
                            .AppendValue(reading.Value)
                            .AppendValue(commitId)
                            .EndRow();
                    }

                    outcomes[i] = CommitOutcome.Stored;
                }
            }

            _sequences.AppendStaged(_writer);
            transaction.Commit();
        }
        catch
        {
            _sequences.RolledBack();
            throw;
        }

        _lastCommitId = commitId;
        _sequences.Committed(_writer);
        return commitId;
    }

    public Task<RawAggregate> AggregateAsync(string patientId, long fromMs, long toMs, Resolution resolution, CancellationToken cancellationToken = default) =>
        Task.Run(() =>
        {
            using var connection = _database.OpenConnection();
            using var command = connection.CreateCommand();
            command.CommandText = """
                SELECT kind, (epoch_ms(ts) // $4) * $4 AS start, count(*), sum(value), min(value), max(value),
                       sum(value * value), arg_max(value, ts), epoch_ms(max(ts)), max(commit_id)
                FROM readings
                WHERE patient_id = $1 AND ts >= $2 AND ts < $3
                GROUP BY kind, start
                ORDER BY kind, start
                """;
            command.Parameters.Add(new DuckDBParameter(patientId));
            command.Parameters.Add(new DuckDBParameter(Timestamps.ToDateTime(fromMs)));
            command.Parameters.Add(new DuckDBParameter(Timestamps.ToDateTime(toMs)));
            command.Parameters.Add(new DuckDBParameter(resolution.Milliseconds()));
            using var reader = command.ExecuteReader();
            var windows = new List<KindWindow>();
            var highestCommitId = 0L;
            while (reader.Read())
            {
                highestCommitId = Math.Max(highestCommitId, reader.GetInt64(9));
                windows.Add(new KindWindow(
                    (VitalKind)reader.GetByte(0),
                    new RollupWindow(
                        reader.GetInt64(1),
                        reader.GetInt64(2),
                        reader.GetDouble(3),
                        reader.GetDouble(4),
                        reader.GetDouble(5),
                        reader.GetDouble(6),
                        reader.GetDouble(7),
                        reader.GetInt64(8))));
            }

            return new RawAggregate(windows, highestCommitId);
        }, cancellationToken);

    public Task<IReadOnlyList<VitalReading>> ReadAsync(string patientId, VitalKind kind, long fromMs, long toMs, int limit, CancellationToken cancellationToken = default) =>
        Task.Run<IReadOnlyList<VitalReading>>(() =>
        {
            using var connection = _database.OpenConnection();
            using var command = connection.CreateCommand();
            command.CommandText = """
                SELECT epoch_ms(ts), value FROM readings
                WHERE patient_id = $1 AND kind = $2 AND ts >= $3 AND ts < $4
                ORDER BY ts LIMIT $5
                """;
            command.Parameters.Add(new DuckDBParameter(patientId));
            command.Parameters.Add(new DuckDBParameter((byte)kind));
            command.Parameters.Add(new DuckDBParameter(Timestamps.ToDateTime(fromMs)));
            command.Parameters.Add(new DuckDBParameter(Timestamps.ToDateTime(toMs)));
            command.Parameters.Add(new DuckDBParameter(limit));
            using var reader = command.ExecuteReader();
            var readings = new List<VitalReading>();
            while (reader.Read())
            {
                readings.Add(new VitalReading(kind, reader.GetInt64(0), reader.GetDouble(1)));
            }

            return readings;
        }, cancellationToken);

    public void Dispose() => _writer.Dispose();
}
