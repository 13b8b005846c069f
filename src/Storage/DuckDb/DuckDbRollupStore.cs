using System.Threading.Channels;
using DuckDB.NET.Data;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Telemetry.Core.Rollups;
using Telemetry.Core.Storage;
using Telemetry.Core.Vitals;

namespace Telemetry.Storage.DuckDb;

/// <summary>
/// Rollups in the embedded DuckDB file. Writes from many grains are queued and written together by one background
/// writer (staging table, then one INSERT OR REPLACE), and each writer learns when its rollups are stored.
/// </summary>
public sealed partial class DuckDbRollupStore(DuckDbDatabase database, IOptions<DuckDbOptions> options, ILogger<DuckDbRollupStore> logger)
    : BackgroundService, IRollupStore
{
    private readonly Channel<PendingWrite> _queue = Channel.CreateBounded<PendingWrite>(
        new BoundedChannelOptions(1_024) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });

    public async Task WriteAsync(IReadOnlyCollection<Rollup> rollups, CancellationToken cancellationToken = default)
    {
        if (rollups.Count == 0)
        {
            return;
        }

        var pending = new PendingWrite(rollups);
        await _queue.Writer.WriteAsync(pending, cancellationToken);
        await pending.Completion.Task.WaitAsync(cancellationToken);
    }

    public Task<IReadOnlyList<RollupWindow>> QueryAsync(string patientId, VitalKind kind, Resolution resolution, long fromMs, long toMs, CancellationToken cancellationToken = default) =>
        Task.Run<IReadOnlyList<RollupWindow>>(() =>
        {
            using var connection = database.OpenConnection();
            using var command = connection.CreateCommand();
            command.CommandText = """
                SELECT epoch_ms(start), count, sum, min, max, sum_sq, last, epoch_ms(last_ts) FROM rollups
                WHERE patient_id = $1 AND kind = $2 AND resolution = $3 AND start >= $4 AND start < $5
                ORDER BY start
                """;
            command.Parameters.Add(new DuckDBParameter(patientId));
            command.Parameters.Add(new DuckDBParameter((byte)kind));
            command.Parameters.Add(new DuckDBParameter((int)resolution));
            command.Parameters.Add(new DuckDBParameter(Timestamps.ToDateTime(fromMs)));
            command.Parameters.Add(new DuckDBParameter(Timestamps.ToDateTime(toMs)));
            using var reader = command.ExecuteReader();
            var windows = new List<RollupWindow>();
            while (reader.Read())
            {
                windows.Add(new RollupWindow(
                    reader.GetInt64(0), reader.GetInt64(1), reader.GetDouble(2), reader.GetDouble(3),
                    reader.GetDouble(4), reader.GetDouble(5), reader.GetDouble(6), reader.GetInt64(7)));
            }

            return windows;
        }, cancellationToken);

    public Task<long> DeleteBeforeAsync(Resolution resolution, long beforeMs, CancellationToken cancellationToken = default) =>
        Task.Run(() =>
        {
            using var connection = database.OpenConnection();
            using var command = connection.CreateCommand();
            command.CommandText = "DELETE FROM rollups WHERE resolution = $1 AND start < $2";
            command.Parameters.Add(new DuckDBParameter((int)resolution));
            command.Parameters.Add(new DuckDBParameter(Timestamps.ToDateTime(beforeMs)));
            return (long)command.ExecuteNonQuery();
        }, cancellationToken);

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        // Let queued rollups reach the file before the process ends.
        _queue.Writer.TryComplete();
        await base.StopAsync(cancellationToken);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        await Task.Yield();
        using var connection = database.OpenConnection();
        using (var create = connection.CreateCommand())
        {
            create.CommandText = "CREATE TEMP TABLE IF NOT EXISTS rollup_staging AS SELECT * FROM rollups LIMIT 0";
            create.ExecuteNonQuery();
        }

        var batch = new List<PendingWrite>();
        var latest = new Dictionary<(string, VitalKind, Resolution, long), Rollup>();
        while (await _queue.Reader.WaitToReadAsync(CancellationToken.None))
        {
            batch.Clear();
            latest.Clear();
            while (latest.Count < options.Value.RollupBatchSize && _queue.Reader.TryRead(out var pending))
            {
                batch.Add(pending);
                foreach (var rollup in pending.Rollups)
                {
                    latest[(rollup.PatientId, rollup.Kind, rollup.Resolution, rollup.Window.StartMs)] = rollup;
                }
            }

            try
            {
                Write(connection, latest.Values);
                foreach (var pending in batch)
                {
                    pending.Completion.TrySetResult();
                }
            }
            catch (Exception exception)
            {
                // Whatever went wrong, fail this batch's writers (their grains rebuild) and keep writing the next.
                LogWriteFailed(logger, exception, latest.Count);
                foreach (var pending in batch)
                {
                    pending.Completion.TrySetException(exception);
                }
            }
        }
    }

    private static void Write(DuckDBConnection connection, IEnumerable<Rollup> rollups)
    {
        using var transaction = connection.BeginTransaction();
        using (var appender = connection.CreateAppender("rollup_staging"))
        {
            foreach (var rollup in rollups)
            {
                var window = rollup.Window;
                appender.CreateRow()
                    .AppendValue(rollup.PatientId)
                    .AppendValue((byte)rollup.Kind)
                    .AppendValue((int)rollup.Resolution)
                    .AppendValue(Timestamps.ToDateTime(window.StartMs))
                    .AppendValue(window.Count)
                    .AppendValue(window.Sum)
                    .AppendValue(window.Min)
                    .AppendValue(window.Max)
                    .AppendValue(window.SumOfSquares)
                    .AppendValue(window.Last)
                    .AppendValue(Timestamps.ToDateTime(window.LastMs))
                    .EndRow();
            }
        }

        using var merge = connection.CreateCommand();
        merge.CommandText = "INSERT OR REPLACE INTO rollups SELECT * FROM rollup_staging; DELETE FROM rollup_staging;";
        merge.ExecuteNonQuery();
        transaction.Commit();
    }

    [LoggerMessage(EventId = 3001, Level = LogLevel.Error, Message = "Writing {Count} rollups failed; they are rebuilt from the raw store when their patient next activates")]
    private static partial void LogWriteFailed(ILogger logger, Exception exception, int count);

    private sealed class PendingWrite(IReadOnlyCollection<Rollup> rollups)
    {
        public IReadOnlyCollection<Rollup> Rollups { get; } = rollups;

        public TaskCompletionSource Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
