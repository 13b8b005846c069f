using StackExchange.Redis;
using Telemetry.Core.Storage;

namespace Telemetry.Storage.Redis;

/// <summary>
/// The patient directory in Redis: one sorted set (all scores 0, so it is ordered by id) shared by the cluster. Care
/// teams and alert rules register their patients here too, so the list is one range read.
/// </summary>
public sealed class RedisPatientDirectory(RedisConnection redis) : IPatientDirectory
{
    internal const string KeyName = "patients";

    private readonly RedisKey _patients = redis.Key(KeyName);

    public async Task RegisterAsync(string patientId, CancellationToken cancellationToken = default) =>
        await (await redis.DatabaseAsync()).SortedSetAddAsync(_patients, patientId, 0);

    public async Task<bool> ContainsAsync(string patientId, CancellationToken cancellationToken = default) =>
        (await (await redis.DatabaseAsync()).SortedSetScoreAsync(_patients, patientId)) is not null;

    public async Task<IReadOnlyList<string>> ListAsync(int limit, string? after = null, CancellationToken cancellationToken = default)
    {
        var database = await redis.DatabaseAsync();
        var ids = await database.SortedSetRangeByValueAsync(
            _patients,
            after is null ? default : (RedisValue)after,
            default,
            after is null ? Exclude.None : Exclude.Start,
            Order.Ascending,
            0,
            limit);
        return [.. ids.Select(id => (string)id!)];
    }
}
