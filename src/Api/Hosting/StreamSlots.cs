using System.Collections.Concurrent;

namespace Telemetry.Api.Patients;

/// <summary>
/// How many live streams each caller has open: each polls its patients' grains every second, so a caller may hold
/// only a few (a dashboard needs one or two), however fast they may make requests.
/// </summary>
public sealed class LiveStreamSlots
{
    public const int PerCaller = 4;

    private readonly ConcurrentDictionary<string, int> _open = new(StringComparer.Ordinal);

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
