using Telemetry.Storage.DuckDb;

namespace Telemetry.Storage.Tests.DuckDb;

public sealed class WriteGroupsTests
{
    [Fact]
    public async Task A_lone_write_is_written_by_its_caller_and_answered_before_the_call_returns()
    {
        var writers = new List<int>();
        var writes = new WriteGroups<int, int>(group =>
        {
            writers.Add(Environment.CurrentManagedThreadId);
            return [.. group.Select(request => request * 10)];
        });

        var answer = writes.WriteAsync(4);

        Assert.True(answer.IsCompletedSuccessfully);
        Assert.Equal(40, await answer);
        Assert.Equal([Environment.CurrentManagedThreadId], writers);
    }

    [Fact]
    public async Task Writes_made_while_a_group_is_written_go_together_in_the_next_group_after_the_work_that_follows_it()
    {
        using var firstStarted = new ManualResetEventSlim();
        using var releaseFirst = new ManualResetEventSlim();
        var groups = new List<int[]>();
        var afterAnswered = 0;
        var writes = new WriteGroups<int, int>(
            group =>
            {
                lock (groups)
                {
                    groups.Add([.. group]);
                }

                if (group[0] == 1)
                {
                    firstStarted.Set();
                    releaseFirst.Wait(TimeSpan.FromSeconds(30));
                }

                return [.. group];
            },
            () => Interlocked.Increment(ref afterAnswered));

        var first = Task.Run(() => writes.WriteAsync(1));
        Assert.True(firstStarted.Wait(TimeSpan.FromSeconds(30)));
        var gathered = Enumerable.Range(2, 3).Select(request => writes.WriteAsync(request)).ToArray();
        Assert.All(gathered, answer => Assert.False(answer.IsCompleted));

        releaseFirst.Set();
        Assert.Equal(1, await first);
        var answers = await Task.WhenAll(gathered);
        Assert.Equal([2, 3, 4], answers);

        lock (groups)
        {
            Assert.Equal([[1], [2, 3, 4]], groups);
        }

        // The work after each group: the first's, then the second's, both in the writer's own time.
        await Eventually(() => Volatile.Read(ref afterAnswered) == 2);
    }

    [Fact]
    public async Task A_group_that_throws_fails_each_of_its_writes_and_the_next_write_goes_on()
    {
        var writes = new WriteGroups<int, int>(group => group[0] < 0 ? throw new IOException("the disk is full") : [.. group]);

        var failed = await Assert.ThrowsAsync<IOException>(() => writes.WriteAsync(-1));

        Assert.Equal("the disk is full", failed.Message);
        Assert.Equal(7, await writes.WriteAsync(7));
    }

    private static async Task Eventually(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "the condition did not hold within 30 s");
            await Task.Delay(10);
        }
    }
}
