using Microsoft.Extensions.Options;
using StackExchange.Redis;
using Telemetry.Storage.Redis;

namespace Telemetry.Api.Cluster;

/// <summary>
/// Which server delivers the webhooks. Alone, this one. In a cluster, the one holding a lease in Redis: taken for
/// <see cref="Term"/> when free and renewed by its holder, so a server that dies hands over within one term. (An event
/// may be delivered twice across a hand-over, as across a restart; receivers dedupe by its id.)
/// </summary>
public sealed class DeliveryLease(IOptions<TelemetryClusterOptions> cluster, IServiceProvider services)
{
    public static readonly TimeSpan Term = TimeSpan.FromSeconds(15);

    // Renew only what this server holds.
    private const string RenewScript = """
        if redis.call('GET', KEYS[1]) == ARGV[1] then
            return redis.call('PEXPIRE', KEYS[1], ARGV[2])
        end
        return 0
        """;

    private readonly string _holder = Environment.MachineName + ":" + Environment.ProcessId + ":" + Guid.NewGuid().ToString("N");

    /// <summary>True when this server may deliver now (and the lease is renewed for another term).</summary>
    public async ValueTask<bool> HoldAsync(string name)
    {
        if (!cluster.Value.Enabled)
        {
            return true;
        }

        try
        {
            var redis = services.GetRequiredService<RedisConnection>();
            var database = await redis.DatabaseAsync();
            var key = redis.Key("lease:" + name);
            if (await database.StringSetAsync(key, _holder, Term, When.NotExists))
            {
                return true;
            }

            return (long)await database.ScriptEvaluateAsync(RenewScript, [key], [_holder, (long)Term.TotalMilliseconds]) == 1;
        }
        catch (Exception exception) when (exception is RedisException or TimeoutException or ObjectDisposedException)
        {
            // Not known to be held (a timeout is no RedisException): whoever delivers next reads the delivered mark again.
            return false;
        }
    }
}
