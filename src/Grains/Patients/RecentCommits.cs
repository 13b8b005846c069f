namespace Telemetry.Grains.Patients;

/// <summary>
/// The ids of the latest commits a patient's grain applied, at most <see cref="Capacity"/>; the oldest is forgotten
/// first. A repair asks whether a commit is among them: one that is not (forgotten, or never applied) is rebuilt from
/// the raw store, so forgetting costs a rebuild, never a reading. Kept in one small array that grows to the capacity:
/// a grain applies a commit for every reading its patient's device sends, and what it keeps per commit is kept for every
/// active patient.
/// </summary>
internal sealed class RecentCommits
{
    public const int Capacity = 64;

    private long[] _ids = [];
    private int _count;

    // Where the next id goes once the array is full (it then wraps, overwriting the oldest).
    private int _next;

    public int Count => _count;

    public bool Contains(long commitId) => Array.IndexOf(_ids, commitId, 0, _count) >= 0;

    /// <summary>Notes <paramref name="commitId"/> as applied; false if it already was.</summary>
    public bool Add(long commitId)
    {
        if (Contains(commitId))
        {
            return false;
        }

        if (_count < _ids.Length)
        {
            _ids[_count++] = commitId;
            return true;
        }

        if (_ids.Length < Capacity)
        {
            Array.Resize(ref _ids, Math.Max(4, _ids.Length * 2));
            _ids[_count++] = commitId;
            return true;
        }

        _ids[_next] = commitId;
        _next = (_next + 1) % Capacity;
        return true;
    }

    public void Clear()
    {
        _count = 0;
        _next = 0;
    }
}
