using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace Telemetry.Storage.Redis;

/// <summary>The one Redis connection the cluster-mode stores share, opened at first use.</summary>
public sealed partial class RedisConnection(IOptions<TelemetryClusterOptions> options, ILogger<RedisConnection> logger) : IAsyncDisposable
{
    private readonly Lazy<Task<ConnectionMultiplexer>> _connection = new(() => ConnectAsync(options.Value, logger));

    public string KeyPrefix { get; } = options.Value.KeyPrefix;

    public async Task<IDatabase> DatabaseAsync() => (await _connection.Value).GetDatabase();

    public async Task<ISubscriber> SubscriberAsync() => (await _connection.Value).GetSubscriber();

    public async Task<ConnectionMultiplexer> MultiplexerAsync() => await _connection.Value;

    public RedisKey Key(string name) => KeyPrefix + name;

    public RedisChannel Channel(string name) => RedisChannel.Literal(KeyPrefix + name);

    public async ValueTask DisposeAsync()
    {
        if (_connection.IsValueCreated && _connection.Value.IsCompletedSuccessfully)
        {
            await _connection.Value.Result.DisposeAsync();
        }
    }

    private static async Task<ConnectionMultiplexer> ConnectAsync(TelemetryClusterOptions options, ILogger logger)
    {
        var configuration = options.RedisConfiguration();

        // Keep trying in the background when Redis is away at start, rather than failing the first request for good.
        configuration.AbortOnConnectFail = false;
        var connection = await ConnectionMultiplexer.ConnectAsync(configuration);
        LogConnected(logger, string.Join(", ", configuration.EndPoints), options.ClusterId);
        return connection;
    }

    [LoggerMessage(EventId = 2400, Level = LogLevel.Information, Message = "Cluster state in Redis at {EndPoints} (cluster {ClusterId})")]
    private static partial void LogConnected(ILogger logger, string endPoints, string clusterId);
}
