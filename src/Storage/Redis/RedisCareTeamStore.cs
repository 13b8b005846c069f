using System.Text.Json;
using StackExchange.Redis;
using Telemetry.Core.Storage;

namespace Telemetry.Storage.Redis;

/// <summary>
/// Care teams in Redis, one hash field per team holding its patients, shared by every server of the cluster. A change
/// is announced on a channel so the other servers' access caches reload; so is a reconnection, after which a change
/// may have been missed.
/// </summary>
public sealed class RedisCareTeamStore : ICareTeamStore
{
    private readonly RedisConnection _redis;
    private readonly RedisKey _teams;
    private readonly RedisChannel _changes;
    private readonly string _self = Guid.NewGuid().ToString("N");
    private readonly SemaphoreSlim _subscribing = new(1, 1);
    private bool _subscribed;

    public RedisCareTeamStore(RedisConnection redis)
    {
        _redis = redis;
        _teams = redis.Key("care-teams");
        _changes = redis.Channel("care-teams:changed");
    }

    public event Action? ChangedElsewhere;

    public async Task<IReadOnlyDictionary<string, IReadOnlySet<string>>> ReadAllAsync(CancellationToken cancellationToken = default)
    {
        await SubscribeAsync();
        var entries = await (await _redis.DatabaseAsync()).HashGetAllAsync(_teams);
        return entries.ToDictionary(
            entry => (string)entry.Name!,
            entry => (IReadOnlySet<string>)JsonSerializer.Deserialize<string[]>((string)entry.Value!)!.ToHashSet(StringComparer.Ordinal),
            StringComparer.Ordinal);
    }

    public async Task SetAsync(string teamId, IReadOnlyCollection<string> patientIds, CancellationToken cancellationToken = default)
    {
        var database = await _redis.DatabaseAsync();
        if (patientIds.Count == 0)
        {
            await database.HashDeleteAsync(_teams, teamId);
        }
        else
        {
            var patients = patientIds.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToArray();
            await database.HashSetAsync(_teams, teamId, JsonSerializer.Serialize(patients));

            // A patient in a care team is a patient the dashboards list.
            await database.SortedSetAddAsync(_redis.Key(RedisPatientDirectory.KeyName), [.. patients.Select(id => new SortedSetEntry(id, 0))]);
        }

        await database.PublishAsync(_changes, _self);
    }

    /// <summary>Subscribes to other servers' changes once; a failed attempt (Redis away) is tried again on the next read.</summary>
    private async Task SubscribeAsync()
    {
        if (Volatile.Read(ref _subscribed))
        {
            return;
        }

        await _subscribing.WaitAsync();
        try
        {
            if (_subscribed)
            {
                return;
            }

            var connection = await _redis.MultiplexerAsync();
            await connection.GetSubscriber().SubscribeAsync(_changes, (_, origin) =>
            {
                if (origin != _self)
                {
                    ChangedElsewhere?.Invoke();
                }
            });
            connection.ConnectionRestored += (_, _) => ChangedElsewhere?.Invoke();
            Volatile.Write(ref _subscribed, true);
        }
        finally
        {
            _subscribing.Release();
        }
    }
}
