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
        async Task SendAsync(ulong sequence)
        {
            try
            {
                var (_, outcomes) = await file.CommitAsync(Batch(sequence));
                Assert.NotEqual(CommitOutcome.Duplicate, outcomes[0].Outcome);
                acked.Add(sequence);
            }
            catch (Exception)
            {
                refused++;
            }
        }

        for (ulong sequence = 1; sequence <= 15; sequence++)
        {
            await SendAsync(sequence);
        }

        await server.StopAsync();

        // Away longer than the commit retries for: the commit fails, and the batch is not acknowledged.
        await SendAsync(16);
        Assert.DoesNotContain(16UL, acked);
        Assert.Equal(1, refused);

        // Back while a commit is still retrying: that commit goes through.
        var retrying = SendAsync(16);
        await Task.Delay(300);
        await server.StartAsync();
        await retrying;
        Assert.Contains(16UL, acked);

        for (ulong sequence = 17; sequence <= Batches; sequence++)
        {
            await SendAsync(sequence);
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
