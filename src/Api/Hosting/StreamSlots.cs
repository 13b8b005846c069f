using System.Collections.Concurrent;

namespace Telemetry.Api.Hosting;

/// <summary>
/// How many streams of one kind each caller has open: a stream holds its connection, a queue and (for the live ones) a
/// poll of its patients' grains every second, so a caller may hold only a few, however fast they may make requests.
/// </summary>
public abstract class StreamSlots(int perCaller, string kind)
{
    private readonly ConcurrentDictionary<string, int> _open = new(StringComparer.Ordinal);

    /// <summary>The most streams of this kind one caller may hold.</summary>
    public int PerCaller { get; } = perCaller;

    /// <summary>
    /// Runs <paramref name="stream"/> in one of the caller's (see <see cref="Security.TelemetryClaims.CallerKey"/>) slots, given back when it ends; or
    /// answers 429 when they hold every one.
    /// </summary>
    public async Task RunAsync(HttpContext context, Func<Task> stream)
    {
        var caller = Security.TelemetryClaims.CallerKey(context.User) ?? "anonymous";
        if (!TryTake(caller))
        {
            await TypedResults.Problem(statusCode: StatusCodes.Status429TooManyRequests, title: $"Too many {kind}",
                detail: $"A caller may hold {PerCaller} {kind} at once; close one first.").ExecuteAsync(context);
            return;
        }

        try
        {
            await stream();
        }
        finally
        {
            Release(caller);
        }
    }

    /// <summary>Takes a slot for <paramref name="caller"/>; false when they have <see cref="PerCaller"/> open already.</summary>
    public bool TryTake(string caller)
    {
        while (true)
        {
            var current = _open.GetOrAdd(caller, 0);
            if (current >= PerCaller)
            {
                return false;
            }

            if (_open.TryUpdate(caller, current + 1, current))
            {
                return true;
            }
        }
    }

    public void Release(string caller)
    {
        while (_open.TryGetValue(caller, out var current))
        {
            if (current <= 1 ? _open.TryRemove(new KeyValuePair<string, int>(caller, current)) : _open.TryUpdate(caller, current - 1, current))
            {
                return;
            }
        }
    }
}

/// <summary>Live vitals streams: a dashboard needs one or two.</summary>
public sealed class LiveStreamSlots() : StreamSlots(4, "live streams");

/// <summary>Alert event streams: one a dashboard or progress page, so a few tabs' worth.</summary>
public sealed class AlertStreamSlots() : StreamSlots(8, "alert streams");
