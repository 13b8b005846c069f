using Telemetry.Core.Storage;

namespace Telemetry.Api.Security;

/// <summary>
/// Which care teams look after which patient, held in memory for every request's access check and written through
/// to the store. Loaded at first use, and again after another server of a cluster changed a team.
/// </summary>
public sealed class CareTeams
{
    private readonly ICareTeamStore _store;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private volatile Dictionary<string, IReadOnlySet<string>>? _teams;

    // Counts changes announced by other servers: a read that one overtook is not kept.
    private int _changes;

    public CareTeams(ICareTeamStore store)
    {
        _store = store;

        // Forget what was read: the next access check reads the teams again.
        store.ChangedElsewhere += () =>
        {
            Interlocked.Increment(ref _changes);
            _teams = null;
        };
    }

    /// <summary>True when any of <paramref name="teams"/> looks after <paramref name="patientId"/>.</summary>
    public async ValueTask<bool> AnyLooksAfterAsync(IEnumerable<string> teams, string patientId, CancellationToken cancellationToken = default)
    {
        var all = await LoadAsync(cancellationToken);
        return teams.Any(team => all.TryGetValue(team, out var patients) && patients.Contains(patientId));
    }

    /// <summary>The patients <paramref name="teams"/> look after between them.</summary>
    public async ValueTask<IReadOnlySet<string>> PatientsOfAsync(IEnumerable<string> teams, CancellationToken cancellationToken = default)
    {
        var all = await LoadAsync(cancellationToken);
        return teams.SelectMany(team => all.TryGetValue(team, out var patients) ? patients : Enumerable.Empty<string>()).ToHashSet(StringComparer.Ordinal);
    }

    public async ValueTask<IReadOnlySet<string>> GetAsync(string teamId, CancellationToken cancellationToken = default) =>
        (await LoadAsync(cancellationToken)).TryGetValue(teamId, out var patients) ? patients : new HashSet<string>();

    /// <summary>
    /// Sets the whole of <paramref name="teamId"/>'s patients; answers the ones it had just before, as the store held
    /// them (read under the same lock as the write, so two changes on this server each see the one before).
    /// </summary>
    public async Task<IReadOnlySet<string>> SetAsync(string teamId, IReadOnlyCollection<string> patientIds, CancellationToken cancellationToken = default)
    {
        await _gate.WaitAsync(cancellationToken);
        try
        {
            // Counted before the read: a change another server makes meanwhile leaves the cache to be read again.
            var changes = Volatile.Read(ref _changes);
            var stored = await _store.ReadAllAsync(cancellationToken);
            IReadOnlySet<string> before = stored.TryGetValue(teamId, out var patients) ? patients : new HashSet<string>();
            await _store.SetAsync(teamId, patientIds, cancellationToken);
            var next = new Dictionary<string, IReadOnlySet<string>>(stored, StringComparer.Ordinal);
            if (patientIds.Count == 0)
            {
                next.Remove(teamId);
            }
            else
            {
                next[teamId] = patientIds.ToHashSet(StringComparer.Ordinal);
            }

            _teams = changes == Volatile.Read(ref _changes) ? next : null;
            return before;
        }
        finally
        {
            _gate.Release();
        }
    }

    private async ValueTask<Dictionary<string, IReadOnlySet<string>>> LoadAsync(CancellationToken cancellationToken)
    {
        if (_teams is { } loaded)
        {
            return loaded;
        }

        await _gate.WaitAsync(cancellationToken);
        try
        {
            if (_teams is { } current)
            {
                return current;
            }

            var changes = Volatile.Read(ref _changes);
            var read = new Dictionary<string, IReadOnlySet<string>>(await _store.ReadAllAsync(cancellationToken), StringComparer.Ordinal);
            if (changes == Volatile.Read(ref _changes))
            {
                _teams = read;
            }

            return read;
        }
        finally
        {
            _gate.Release();
        }
    }
}
