using Telemetry.Core.Readings;
using Telemetry.Core.Vitals;
using Telemetry.Testing;
using Xunit;
using static Telemetry.Storage.Tests.DuckDb.Batches;

namespace Telemetry.Storage.Tests.Influx;

/// <summary>The line-protocol server stopped in the middle of a stream of commits, and started again.</summary>
public sealed class InfluxOutageTests
{
    private const int Batches = 40;
    private const int ReadingsPerBatch = 50;

    [Fact]
    public async Task Nothing_is_acknowledged_while_the_store_is_away_and_nothing_is_lost_or_doubled_when_it_returns()
    {
        await using var server = await VictoriaMetrics.StartNewAsync();
        using var file = InfluxStoreFile.ForVictoriaMetrics(server.Url, options =>
        {
            options.RetryFor = TimeSpan.FromSeconds(2);
            options.RetryDelay = TimeSpan.FromMilliseconds(50);
            options.MaxRetryDelay = TimeSpan.FromMilliseconds(200);
            options.RequestTimeout = TimeSpan.FromSeconds(1);
        });

        var acked = new HashSet<ulong>();
        var refused = 0;

        // The device sends in order and, like the real ones, sends a batch with no answer again.
        async Task SendAsync(ulong sequence, bool resent = false)
        {
            CommitOutcome outcome;
            try
            {
                var (_, outcomes) = await file.CommitAsync(Batch(sequence));
                outcome = outcomes[0].Outcome;
            }
            catch (Exception)
            {
                refused++;
                return;
            }

            // A resend may find its batch stored by the try that timed out: acknowledged all the same.
            if (!resent)
            {
                Assert.NotEqual(CommitOutcome.Duplicate, outcome);
            }

            acked.Add(sequence);
        }

        // While the store is up, a request that times out on a busy machine is sent again until answered.
        async Task SendUntilAckedAsync(ulong sequence)
        {
            await SendAsync(sequence);
            for (var attempt = 1; attempt < 5 && !acked.Contains(sequence); attempt++)
            {
                await SendAsync(sequence, resent: true);
            }
        }

        for (ulong sequence = 1; sequence <= 15; sequence++)
        {
            await SendUntilAckedAsync(sequence);
        }

        await server.StopAsync();

        // Away longer than the commit retries for: the commit fails, and the batch is not acknowledged.
        var refusedBefore = refused;
        await SendAsync(16);
        Assert.DoesNotContain(16UL, acked);
        Assert.Equal(refusedBefore + 1, refused);

        // Back while a commit is still retrying: that commit goes through.
        var retrying = SendAsync(16);
        await Task.Delay(300);
        await server.StartAsync();
        await retrying;
        Assert.Contains(16UL, acked);

        for (ulong sequence = 17; sequence <= Batches; sequence++)
        {
            await SendUntilAckedAsync(sequence);
        }

        Assert.Equal(Batches, acked.Count);
        var stored = await server.ExportAsync("vitals_value");
        Assert.Equal(Batches * ReadingsPerBatch, stored.Count);
        Assert.Equal(stored.Count, stored.Select(sample => sample.TimestampMs).Distinct().Count());
    }

    private static DeviceBatch Batch(ulong sequence) => Of(
        "watch-1",
        "patient-1",
        sequence,
        [.. Enumerable.Range(0, ReadingsPerBatch).Select(i => new VitalReading(VitalKind.HeartRate, T0 + ((long)sequence * 1_000) + i, 60 + i))]);
}
