using System.Text.Json;
using StackExchange.Redis;
using Telemetry.Core;
using Telemetry.Core.Alerts;
using Telemetry.Core.Storage;

namespace Telemetry.Storage.Redis;

/// <summary>
/// Alert history in Redis, shared by the cluster. Each event is appended by one script, so handing out its position,
/// recording it and updating the alert it changes happen at once: a reader of "after position N" never sees a gap
/// fill in later, and an event handed over again (a grain's outbox after a crash, on any server) keeps its position.
/// Every append is announced on a channel, which the servers' alert tails listen to.
/// </summary>
public sealed class RedisAlertStore(RedisConnection redis) : IAlertStore
{
    public const string AppendedChannel = "alerts:appended";

    // KEYS: seq hash of the patient, position counter, all events, the patient's events, alerts by id, raised (all),
    // raised (patient), open (all), open (patient), deleted-before mark. ARGV: seq, event, alert id, alert, raised at
    // (ms), open (1/0), the event's time (ms). Answers the event's position; 0 for one older than the history kept and
    // not in it (deleted by retention, or it would be), which is not stored again.
    private const string AppendScript = """
        local existing = redis.call('HGET', KEYS[1], ARGV[1])
        if existing then return tonumber(existing) end
        if tonumber(ARGV[7]) < tonumber(redis.call('GET', KEYS[10]) or '0') then return 0 end
        local position = redis.call('INCR', KEYS[2])
        redis.call('HSET', KEYS[1], ARGV[1], position)
        redis.call('ZADD', KEYS[3], position, ARGV[2])
        redis.call('ZADD', KEYS[4], position, ARGV[2])
        redis.call('HSET', KEYS[5], ARGV[3], ARGV[4])
        redis.call('ZADD', KEYS[6], ARGV[5], ARGV[3])
        redis.call('ZADD', KEYS[7], ARGV[5], ARGV[3])
        if ARGV[6] == '1' then
            redis.call('ZADD', KEYS[8], ARGV[5], ARGV[3])
            redis.call('ZADD', KEYS[9], ARGV[5], ARGV[3])
        else
            redis.call('ZREM', KEYS[8], ARGV[3])
            redis.call('ZREM', KEYS[9], ARGV[3])
        end
        return position
        """;

    private readonly RedisKey _position = redis.Key("alerts:position");
    private readonly RedisKey _events = redis.Key("alerts:events");
    private readonly RedisKey _alerts = redis.Key("alerts:by-id");
    private readonly RedisKey _raised = redis.Key("alerts:raised");
    private readonly RedisKey _open = redis.Key("alerts:open");
    private readonly RedisKey _watched = redis.Key("alerts:watched");
    private readonly RedisKey _cursors = redis.Key("alerts:cursors");
    private readonly RedisKey _deletedBefore = redis.Key("alerts:deleted-before");
    private readonly RedisChannel _appended = redis.Channel(AppendedChannel);

    public async Task<IReadOnlyList<AlertEvent>> AppendAsync(IReadOnlyList<AlertEvent> events, CancellationToken cancellationToken = default)
    {
        if (events.Count == 0)
        {
            return [];
        }

        var database = await redis.DatabaseAsync();
        var stored = new List<AlertEvent>(events.Count);
        foreach (var item in events)
        {
            var alert = item.Alert;
            var position = (long)await database.ScriptEvaluateAsync(
                AppendScript,
                [
                    redis.Key($"alerts:seq:{item.PatientId}"), _position, _events, redis.Key($"alerts:events:{item.PatientId}"), _alerts,
                    _raised, redis.Key($"alerts:raised:{item.PatientId}"), _open, redis.Key($"alerts:open:{item.PatientId}"), _deletedBefore,
                ],
                [
                    item.Seq, JsonSerializer.Serialize(item with { Position = 0 }, TelemetryJson.Options), alert.AlertId,
                    JsonSerializer.Serialize(alert, TelemetryJson.Options), alert.RaisedAt.ToUnixTimeMilliseconds(), alert.IsOpen ? 1 : 0,
                    item.At.ToUnixTimeMilliseconds(),
                ]);
            if (position != 0)
            {
                stored.Add(item with { Position = position });
            }
        }

        if (stored.Count > 0)
        {
            await database.PublishAsync(_appended, stored[^1].Position);
        }

        return stored;
    }

    public async Task<IReadOnlyList<AlertEvent>> ReadEventsAsync(long afterPosition, string? patientId, int limit, CancellationToken cancellationToken = default)
    {
        var database = await redis.DatabaseAsync();
        var entries = await database.SortedSetRangeByScoreWithScoresAsync(
            patientId is null ? _events : redis.Key($"alerts:events:{patientId}"),
            afterPosition,
            double.PositiveInfinity,
            Exclude.Start,
            Order.Ascending,
            0,
            limit);
        return [.. entries.Select(entry => JsonSerializer.Deserialize<AlertEvent>((string)entry.Element!, TelemetryJson.Options)! with { Position = (long)entry.Score })];
    }

    public async Task<long> LastPositionAsync(CancellationToken cancellationToken = default) =>
        (long?)await (await redis.DatabaseAsync()).StringGetAsync(_position) ?? 0;

    public async Task<IReadOnlyList<Alert>> QueryAsync(AlertQuery query, CancellationToken cancellationToken = default)
    {
        var database = await redis.DatabaseAsync();
        var index = (query.OpenOnly, query.PatientId) switch
        {
            (true, null) => _open,
            (true, { } patientId) => redis.Key($"alerts:open:{patientId}"),
            (false, null) => _raised,
            (false, { } patientId) => redis.Key($"alerts:raised:{patientId}"),
        };

        // Newest first; alerts raised in the same millisecond come by id, descending, as the embedded store orders them
        // (Redis orders a score's members by their bytes). After a given alert: first those raised in its millisecond
        // with a lower id, then those raised before it.
        var from = query.From?.ToUnixTimeMilliseconds() ?? double.NegativeInfinity;
        var to = query.To?.ToUnixTimeMilliseconds() ?? double.PositiveInfinity;
        var exclude = query.To is null ? Exclude.None : Exclude.Stop;
        var tied = Array.Empty<RedisValue>();
        if (query.After is { } after && after.RaisedAt.ToUnixTimeMilliseconds() is var afterMs && afterMs < to)
        {
            if (afterMs >= from)
            {
                tied = [.. (await database.SortedSetRangeByScoreAsync(index, afterMs, afterMs, Exclude.None, Order.Descending))
                    .Where(id => string.CompareOrdinal(id, after.AlertId) < 0)
                    .Take(query.Limit)];
            }

            (to, exclude) = (afterMs, Exclude.Stop);
        }

        // A range emptied by the alert after which it starts is not read (the wrong way round, it would be read reversed).
        var ids = tied.Length >= query.Limit || to <= from
            ? tied
            : [.. tied, .. await database.SortedSetRangeByScoreAsync(index, from, to, exclude, Order.Descending, 0, query.Limit - tied.Length)];
        if (ids.Length == 0)
        {
            return [];
        }

        var alerts = await database.HashGetAsync(_alerts, ids);
        return [.. alerts.Where(alert => alert.HasValue).Select(alert => JsonSerializer.Deserialize<Alert>((string)alert!, TelemetryJson.Options)!)];
    }

    public async Task<Alert?> GetAsync(string alertId, CancellationToken cancellationToken = default) =>
        await (await redis.DatabaseAsync()).HashGetAsync(_alerts, alertId) is { HasValue: true } json
            ? JsonSerializer.Deserialize<Alert>((string)json!, TelemetryJson.Options)
            : null;

    /// <summary>
    /// Deletes the history older than <paramref name="cutoff"/> a page at a time, each page in one transaction: events
    /// from the lowest position on, until a page of them is not older (an event handed over again after a crash can sit
    /// later than newer ones; it goes at a later run), and alerts raised before it that are not open and were cleared
    /// before it. The cutoff is marked
    /// first, so an event from before it handed over again meanwhile is not stored again. Positions come from their own
    /// counter, so they never go back. Servers of a cluster may run this at once: what each deletes is counted once.
    /// </summary>
    public async Task<long> DeleteBeforeAsync(DateTimeOffset cutoff, CancellationToken cancellationToken = default)
    {
        const int PageSize = 500;
        var database = await redis.DatabaseAsync();
        await database.ScriptEvaluateAsync(
            "if tonumber(ARGV[1]) > tonumber(redis.call('GET', KEYS[1]) or '0') then redis.call('SET', KEYS[1], ARGV[1]) end",
            [_deletedBefore], [cutoff.ToUnixTimeMilliseconds()]);
        long deleted = 0;

        // Events newer than the cutoff among the oldest positions (one stamped by a server whose clock ran ahead, say)
        // are stepped over; a page holding only newer ones ends the walk.
        var keptEvents = 0L;
        while (!cancellationToken.IsCancellationRequested)
        {
            var page = await database.SortedSetRangeByRankAsync(_events, keptEvents, keptEvents + PageSize - 1);
            var old = page.Select(entry => (Member: entry, Event: JsonSerializer.Deserialize<AlertEvent>((string)entry!, TelemetryJson.Options)!))
                .Where(entry => entry.Event.At < cutoff)
                .ToList();
            keptEvents += page.Length - old.Count;
            if (old.Count == 0)
            {
                break;
            }

            var transaction = database.CreateTransaction();
            var removed = transaction.SortedSetRemoveAsync(_events, [.. old.Select(entry => entry.Member)]);
            var alongside = new List<Task>();
            foreach (var patient in old.GroupBy(entry => entry.Event.PatientId, StringComparer.Ordinal))
            {
                alongside.Add(transaction.SortedSetRemoveAsync(redis.Key($"alerts:events:{patient.Key}"), [.. patient.Select(entry => entry.Member)]));
                alongside.Add(transaction.HashDeleteAsync(redis.Key($"alerts:seq:{patient.Key}"), [.. patient.Select(entry => (RedisValue)entry.Event.Seq)]));
            }

            await transaction.ExecuteAsync();
            await Task.WhenAll(alongside);
            deleted += await removed;
            if (page.Length < PageSize)
            {
                break;
            }
        }

        // Alerts raised before the cutoff, oldest first; the open ones among them are stepped over.
        var skip = 0L;
        while (!cancellationToken.IsCancellationRequested)
        {
            var ids = await database.SortedSetRangeByScoreAsync(_raised, double.NegativeInfinity, cutoff.ToUnixTimeMilliseconds(), Exclude.Stop, Order.Ascending, skip, PageSize);
            if (ids.Length == 0)
            {
                break;
            }

            // Those still open stay, and so do those that changed (cleared) after the cutoff.
            var open = await database.SortedSetScoresAsync(_open, ids);
            var alerts = await database.HashGetAsync(_alerts, ids);
            var closed = ids.Where((_, i) => open[i] is null && ClosedBefore(alerts[i], cutoff)).ToArray();
            skip += ids.Length - closed.Length;
            if (closed.Length > 0)
            {
                var transaction = database.CreateTransaction();
                var removed = transaction.SortedSetRemoveAsync(_raised, closed);
                var alongside = new List<Task> { transaction.HashDeleteAsync(_alerts, closed) };
                foreach (var patient in closed.GroupBy(id => AlertIds.TryParse(id, out var patientId, out _) ? patientId : string.Empty, StringComparer.Ordinal))
                {
                    alongside.Add(transaction.SortedSetRemoveAsync(redis.Key($"alerts:raised:{patient.Key}"), [.. patient]));
                }

                await transaction.ExecuteAsync();
                await Task.WhenAll(alongside);
                deleted += await removed;
            }

            if (ids.Length < PageSize)
            {
                break;
            }
        }

        return deleted;
    }

    /// <summary>Whether a closed alert's last change (its clearing) came before <paramref name="cutoff"/>; one no longer stored is gone already.</summary>
    private static bool ClosedBefore(RedisValue json, DateTimeOffset cutoff) =>
        !json.HasValue || JsonSerializer.Deserialize<Alert>((string)json!, TelemetryJson.Options) is not { } alert || (alert.ClearedAt ?? alert.RaisedAt) < cutoff;

    public async Task SetWatchedAsync(string patientId, bool watched, CancellationToken cancellationToken = default)
    {
        var database = await redis.DatabaseAsync();
        if (watched)
        {
            await database.SetAddAsync(_watched, patientId);
            await database.SortedSetAddAsync(redis.Key(RedisPatientDirectory.KeyName), patientId, 0);
        }
        else
        {
            await database.SetRemoveAsync(_watched, patientId);
        }
    }

    public async Task<IReadOnlyList<string>> WatchedPatientsAsync(CancellationToken cancellationToken = default) =>
        [.. (await (await redis.DatabaseAsync()).SetMembersAsync(_watched)).Select(id => (string)id!).Order(StringComparer.Ordinal)];

    public async Task<long?> ReadCursorAsync(string consumer, CancellationToken cancellationToken = default) =>
        (long?)await (await redis.DatabaseAsync()).HashGetAsync(_cursors, consumer);

    public async Task WriteCursorAsync(string consumer, long position, CancellationToken cancellationToken = default) =>
        await (await redis.DatabaseAsync()).HashSetAsync(_cursors, consumer, position);
}
