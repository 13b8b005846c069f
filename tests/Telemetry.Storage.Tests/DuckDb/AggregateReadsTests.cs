using System.Collections.Concurrent;
using Telemetry.Core.Rollups;
using Telemetry.Core.Storage;
using Telemetry.Core.Vitals;
using Telemetry.Storage.DuckDb;

namespace Telemetry.Storage.Tests.DuckDb;

/// <summary>
/// How requests for aggregates are gathered into queries. The query here is a stand-in that records what it was asked
/// and waits for the test's word; the DuckDB query itself is tested in <see cref="DuckDbRawSeriesStoreTests"/>.
/// </summary>
public sealed class AggregateReadsTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    private readonly ConcurrentQueue<string[]> _queries = new();
    private readonly SemaphoreSlim _go = new(0);
    private readonly SemaphoreSlim _started = new(0);
    private readonly HashSet<string> _failing = [];
    private readonly AggregateReads _reads;

    public AggregateReadsTests() => _reads = new AggregateReads(Read);

    [Fact]
    public async Task Requests_that_arrive_while_a_query_runs_go_together_in_the_next()
    {
        var first = _reads.ReadAsync("a", 0, 60_000, Resolution.Minute, CancellationToken.None);
        Assert.True(await _started.WaitAsync(Patience));
        var others = new[] { "b", "c", "c", "d" }.Select(patient => _reads.ReadAsync(patient, 0, 60_000, Resolution.Minute, CancellationToken.None)).ToArray();
        var otherSpan = _reads.ReadAsync("e", 0, 120_000, Resolution.Minute, CancellationToken.None);
        _go.Release(3);

        Assert.Equal(1, (await first.WaitAsync(Patience)).HighestCommitId);
        Assert.Equal([2, 3, 3, 4], (await Task.WhenAll(others).WaitAsync(Patience)).Select(aggregate => aggregate.HighestCommitId));
        Assert.Equal(5, (await otherSpan.WaitAsync(Patience)).HighestCommitId);
        var queries = _queries.ToArray();
        Assert.Contains(["a"], queries);
        Assert.Contains(["b", "c", "d"], queries);
        Assert.Contains(["e"], queries);
        Assert.Equal(3, queries.Length);
    }

    [Fact]
    public async Task More_patients_than_a_query_takes_go_in_several()
    {
        var first = _reads.ReadAsync("p-0", 0, 60_000, Resolution.Minute, CancellationToken.None);
        Assert.True(await _started.WaitAsync(Patience));
        var waiting = Enumerable.Range(1, AggregateReads.MaxPatientsPerRead + 1)
            .Select(i => _reads.ReadAsync($"p-{i}", 0, 60_000, Resolution.Minute, CancellationToken.None)).ToArray();
        _go.Release(3);

        await Task.WhenAll([first, .. waiting]).WaitAsync(Patience);
        Assert.Equal([1, AggregateReads.MaxPatientsPerRead, 1], _queries.Select(query => query.Length));
    }

    [Fact]
    public async Task When_a_query_for_several_fails_each_patient_is_read_alone()
    {
        _failing.Add("bad");
        var first = _reads.ReadAsync("a", 0, 60_000, Resolution.Minute, CancellationToken.None);
        Assert.True(await _started.WaitAsync(Patience));
        var good = _reads.ReadAsync("good", 0, 60_000, Resolution.Minute, CancellationToken.None);
        var bad = _reads.ReadAsync("bad", 0, 60_000, Resolution.Minute, CancellationToken.None);
        _go.Release(4);

        await first.WaitAsync(Patience);
        Assert.Equal(4, (await good.WaitAsync(Patience)).HighestCommitId);
        await Assert.ThrowsAsync<InvalidOperationException>(() => bad.WaitAsync(Patience));
        Assert.Equal([["a"], ["good", "bad"], ["good"], ["bad"]], _queries.ToArray());

        // The span is read again afterwards.
        _go.Release(1);
        Assert.Equal(1, (await _reads.ReadAsync("a", 0, 60_000, Resolution.Minute, CancellationToken.None).WaitAsync(Patience)).HighestCommitId);
    }

    [Fact]
    public async Task A_request_given_up_before_its_query_is_left_out_of_it()
    {
        var first = _reads.ReadAsync("a", 0, 60_000, Resolution.Minute, CancellationToken.None);
        Assert.True(await _started.WaitAsync(Patience));
        using var givingUp = new CancellationTokenSource();
        var givenUp = _reads.ReadAsync("b", 0, 60_000, Resolution.Minute, givingUp.Token);
        var kept = _reads.ReadAsync("c", 0, 60_000, Resolution.Minute, CancellationToken.None);
        await givingUp.CancelAsync();
        _go.Release(2);

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => givenUp.WaitAsync(Patience));
        Assert.Equal(3, (await kept.WaitAsync(Patience)).HighestCommitId);
        await first.WaitAsync(Patience);
        Assert.Equal([["a"], ["c"]], _queries.ToArray());
    }

    /// <summary>The stand-in query: each patient's aggregate carries the patient's letter or number as its commit id.</summary>
    private IReadOnlyDictionary<string, RawAggregate> Read(IReadOnlyList<string> patients, long fromMs, long toMs, Resolution resolution)
    {
        _queries.Enqueue([.. patients]);
        _started.Release();
        if (!_go.Wait(Patience))
        {
            throw new TimeoutException("the test did not let the query go");
        }

        if (patients.Any(_failing.Contains))
        {
            throw new InvalidOperationException("a patient's read fails");
        }

        return patients.ToDictionary(patient => patient, patient => new RawAggregate(
            [new KindWindow(VitalKind.HeartRate, new RollupWindow(fromMs, 1, 60, 60, 60, 3_600, 60, fromMs))],
            CommitIdOf(patient)));
    }

    private static long CommitIdOf(string patient) => patient switch
    {
        "a" => 1,
        "b" => 2,
        "c" => 3,
        "d" => 4,
        "e" => 5,
        "good" => 4,
        _ => patient.StartsWith("p-", StringComparison.Ordinal) ? long.Parse(patient[2..], System.Globalization.CultureInfo.InvariantCulture) : 0,
    };
}
