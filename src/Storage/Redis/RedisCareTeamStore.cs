using System.Text.Json;
using StackExchange.Redis;
using Telemetry.Core.Storage;

namespace Telemetry.Storage.Redis;

/// <summary>
/// Care teams in Redis, one hash field per team holding its patients, shared by every server of the cluster. Each
/// change counts up a version in the same transaction and is announced on a channel, so the other servers' access
/// caches reload at once. An announcement is told only to those listening at that moment, and a change whose
/// announcement failed is still made: each server therefore also reads the version every second and reloads when it
/// moved (or could not be read), so a server that missed an announcement keeps a removed team's patients readable for
/// about a second. A reconnection is treated as a change too.
/// </summary>
public sealed class RedisCareTeamStore : ICareTeamStore, IAsyncDisposable
{
    /// <summary>How often each server reads the teams' version.</summary>
    public static readonly TimeSpan VersionPoll = TimeSpan.FromSeconds(1);

    private readonly RedisConnection _redis;
    private readonly RedisKey _teams;
    private readonly RedisKey _version;
    private readonly RedisChannel _changes;
    private readonly string _self = Guid.NewGuid().ToString("N");
    private readonly SemaphoreSlim _subscribing = new(1, 1);
    private readonly CancellationTokenSource _stopping = new();
    private Task _polling = Task.CompletedTask;
    private bool _subscribed;

    // The version this server last knew the teams at; a poll finding another is a change made elsewhere.
    private long _seenVersion;

    public RedisCareTeamStore(RedisConnection redis)
    {
        _redis = redis;
        _teams = redis.Key("care-teams");
        _version = redis.Key("care-teams:version");
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
        var transaction = database.CreateTransaction();
        var changes = new List<Task>();
        if (patientIds.Count == 0)
        {
            changes.Add(transaction.HashDeleteAsync(_teams, teamId));
        }
        else
        {
            var patients = patientIds.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToArray();
            changes.Add(transaction.HashSetAsync(_teams, teamId, JsonSerializer.Serialize(patients)));

            // A patient in a care team is a patient the dashboards list.
            changes.Add(transaction.SortedSetAddAsync(_redis.Key(RedisPatientDirectory.KeyName), [.. patients.Select(id => new SortedSetEntry(id, 0))]));
        }

        var version = transaction.StringIncrementAsync(_version);
        await transaction.ExecuteAsync();
        await Task.WhenAll(changes);

        // This server's own change is not one made elsewhere (its caller keeps what it wrote), unless another came between.
        var made = await version;
        Interlocked.CompareExchange(ref _seenVersion, made, made - 1);

        try
        {
            await database.PublishAsync(_changes, _self);
        }
        catch (Exception exception) when (exception is RedisException or TimeoutException)
        {
            // The change is made: the other servers find it by its version within a second.
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        await _polling.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _stopping.Dispose();
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
            if (_subscribed || _stopping.IsCancellationRequested)
            {
                return;
            }

            // Read before the teams are: a change from here on moves the version past it. Read first, so that a failed
            // read leaves no handler behind to be added again at the next try.
            var connection = await _redis.MultiplexerAsync();
            Interlocked.Exchange(ref _seenVersion, (long?)await connection.GetDatabase().StringGetAsync(_version) ?? 0);
            await connection.GetSubscriber().SubscribeAsync(_changes, (_, origin) =>
            {
                if (origin != _self)
                {
                    ChangedElsewhere?.Invoke();
                }
            });
            connection.ConnectionRestored += (_, _) => ChangedElsewhere?.Invoke();
            _polling = PollAsync(_stopping.Token);
            Volatile.Write(ref _subscribed, true);
        }
        finally
        {
            _subscribing.Release();
        }
    }

    private async Task PollAsync(CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(VersionPoll);
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken))
            {
                try
                {
                    var version = (long?)await (await _redis.DatabaseAsync()).StringGetAsync(_version) ?? 0;
                    if (Interlocked.Exchange(ref _seenVersion, version) != version)
                    {
                        ChangedElsewhere?.Invoke();
                    }
                }
                catch (Exception exception) when (exception is not OperationCanceledException and not ObjectDisposedException)
                {
                    // Not known whether the teams changed: what was read goes, and the next access check reads them again
                    // (while Redis is away, it fails rather than answer from teams that may be stale).
                    ChangedElsewhere?.Invoke();
                }
            }
        }
        catch (Exception exception) when (exception is OperationCanceledException or ObjectDisposedException)
        {
            // Stopped, or the connection closed under it.
        }
    }
}
