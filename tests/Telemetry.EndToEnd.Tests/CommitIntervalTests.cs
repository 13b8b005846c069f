using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using MQTTnet;

namespace Telemetry.EndToEnd.Tests;

/// <summary>
/// The group commit's interval (<c>Telemetry:Ingest:CommitInterval</c>): a steady stream of small publishes shares
/// commits instead of each one or two making a commit (and a WAL fsync) of their own; every publish is still acked, once
/// its commit is in.
/// </summary>
public sealed partial class CommitIntervalTests
{
    private static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(500);

    [Fact]
    public async Task A_steady_stream_of_one_reading_publishes_commits_once_an_interval()
    {
        await using var server = await TelemetryServer.StartNewAsync(new Dictionary<string, string>
        {
            ["Telemetry__Ingest__CommitInterval"] = Interval.ToString("c", CultureInfo.InvariantCulture),
        });
        const int devices = 5;
        const int publishesEach = 30;
        var clients = new List<IMqttClient>();
        for (var i = 0; i < devices; i++)
        {
            var deviceId = $"interval-watch-{i}";
            clients.Add(await Devices.ConnectMqttAsync(server, deviceId, await server.ProvisionAsync(deviceId, $"p-interval-{i}")));
        }

        var start = Devices.RecentMinute();
        var before = await server.Http.GetStringAsync("/metrics");
        var elapsed = Stopwatch.StartNew();

        // Each device publishes a reading every 50 ms without waiting for the acks: 100 publishes a second in all, so
        // without the interval about as many commits.
        var sends = clients.Select(async (client, device) =>
        {
            var acks = new List<Task<MqttClientPublishResult>>();
            for (var seq = 1; seq <= publishesEach; seq++)
            {
                acks.Add(Devices.PublishAsync(client, $"devices/interval-watch-{device}/vitals", Devices.JsonHeartRates((ulong)seq, start.AddSeconds(seq), 60 + seq)));
                await Task.Delay(50);
            }

            return await Task.WhenAll(acks);
        }).ToList();
        var results = (await Task.WhenAll(sends)).SelectMany(acks => acks).ToList();
        elapsed.Stop();
        var after = await server.Http.GetStringAsync("/metrics");

        Assert.All(results, result => Assert.Equal(MqttClientPublishReasonCode.Success, result.ReasonCode));
        Assert.Equal(devices * publishesEach, Counter(BatchesCommitted(), after) - Counter(BatchesCommitted(), before));

        // Commits start at least an interval apart while publishes keep coming: no more than the time taken allows (the
        // first at once, then one an interval, and the last publishes' own).
        var commits = Counter(Commits(), after) - Counter(Commits(), before);
        Assert.InRange(commits, 1, 2 + (long)(elapsed.Elapsed / Interval));
        var trend = await server.TrendAsync("p-interval-0", "heart_rate", start, start.AddMinutes(1), count: publishesEach);
        Assert.Equal(publishesEach, Assert.Single(trend.Points).Count);
        clients.ForEach(client => client.Dispose());
    }

    private static long Counter(Regex metric, string metrics) =>
        metric.Matches(metrics).Sum(match => long.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture));

    [GeneratedRegex(@"^telemetry_batches_committed_total(?:\{[^}]*\})? ([0-9]+)", RegexOptions.Multiline)]
    private static partial Regex BatchesCommitted();

    [GeneratedRegex(@"^telemetry_commit_duration_seconds_count(?:\{[^}]*\})? ([0-9]+)", RegexOptions.Multiline)]
    private static partial Regex Commits();
}
