using Telemetry.Core.Readings;
using Telemetry.Core.Vitals;
using Telemetry.Storage.Influx;
using Xunit;
using static Telemetry.Storage.Tests.DuckDb.Batches;

namespace Telemetry.Storage.Tests.Influx;

/// <summary>What the store sends and how it answers InfluxDB's refusals, against a server that answers from a script.</summary>
public sealed class InfluxRetryTests : IDisposable
{
    private readonly RecordingInfluxServer _server = new();
    private readonly InfluxStoreFile _file;

    public InfluxRetryTests()
    {
        _file = new InfluxStoreFile(_server.Url, options =>
        {
            options.RetryFor = TimeSpan.FromSeconds(5);
            options.RetryDelay = TimeSpan.FromMilliseconds(10);
            options.MaxRetryDelay = TimeSpan.FromMilliseconds(100);
        });
    }

    public void Dispose()
    {
        _file.Dispose();
        _server.Dispose();
    }

    [Fact]
    public async Task A_commits_minutes_are_in_the_local_file_before_its_lines_go_out()
    {
        // A write cut short by a crash may have stored some lines, which a resend finds stored and hands to no grain:
        // the repair on the next start finds their minutes only if they were recorded before the write.
        var minutesWhileWriting = new List<long>();
        _server.WhileWriting = () =>
        {
            using var connection = _file.Database.OpenConnection();
            using var command = connection.CreateCommand();
            command.CommandText = "SELECT count(*) FROM all_commit_minutes WHERE patient_id = 'patient-1'";
            minutesWhileWriting.Add(Convert.ToInt64(command.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture));
        };

        await _file.CommitAsync(Of("watch-1", "patient-1", 1, new VitalReading(VitalKind.HeartRate, T0, 72.5), new VitalReading(VitalKind.HeartRate, T0 + 60_000, 73)));

        Assert.Equal([2L], minutesWhileWriting);
    }

    [Fact]
    public async Task A_resend_without_a_batch_number_that_the_server_does_not_show_yet_is_known_as_one()
    {
        // The server here shows nothing of what it was sent (as a series server does for a while after a write): a
        // resend of readings without a batch number (SenML, say) is known from what this server committed lately.
        DeviceBatch Unnumbered() => Of("watch-1", "patient-1", 0, new VitalReading(VitalKind.HeartRate, T0, 72.5), new VitalReading(VitalKind.HeartRate, T0 + 1_000, 73));
        var (_, first) = await _file.CommitAsync(Unnumbered());
        var (_, again) = await _file.CommitAsync(Unnumbered());

        Assert.Equal(2, first[0].Stored.Length);
        Assert.Equal((CommitOutcome.Stored, 0, 2), (again[0].Outcome, again[0].Stored.Length, again[0].Duplicates));
        Assert.Single(_server.Writes);
    }

    [Fact]
    public async Task A_resent_numbered_batch_the_server_does_not_show_yet_is_a_duplicate_by_its_number()
    {
        // Nothing is found by the lookup here; the batch's number, committed before, still says it was sent: not written
        // or handed to a grain again.
        DeviceBatch Numbered() => Of("watch-1", "patient-1", 7, new VitalReading(VitalKind.HeartRate, T0, 72.5), new VitalReading(VitalKind.HeartRate, T0 + 1_000, 73));
        await _file.CommitAsync(Numbered());
        var (_, again) = await _file.CommitAsync(Numbered());

        Assert.Equal((CommitOutcome.Duplicate, 2), (again[0].Outcome, again[0].Duplicates));
        Assert.Single(_server.Writes);
    }

    [Fact]
    public void Recent_readings_are_kept_for_their_time_and_at_most_so_many_per_series()
    {
        var recent = new RecentReadings(TimeSpan.FromSeconds(15));
        for (var i = 0; i <= RecentReadings.MaxPerSeries; i++)
        {
            recent.Add("watch-1", VitalKind.HeartRate, i, 60 + (i % 40), nowMs: 1_000);
        }

        recent.Add("ring-2", VitalKind.HeartRate, 7, 72, nowMs: 10_000);

        Assert.False(recent.Contains("watch-1", VitalKind.HeartRate, 0));
        Assert.True(recent.Contains("watch-1", VitalKind.HeartRate, RecentReadings.MaxPerSeries));
        Assert.False(recent.Contains("watch-1", VitalKind.OxygenSaturation, 1));
        recent.Sweep(nowMs: 16_000);
        Assert.False(recent.Contains("watch-1", VitalKind.HeartRate, RecentReadings.MaxPerSeries));
        Assert.True(recent.Contains("ring-2", VitalKind.HeartRate, 7));
        Assert.Equal(1, recent.Count);
    }

    [Fact]
    public async Task Writes_are_gzip_line_protocol_in_milliseconds_with_the_token()
    {
        await _file.CommitAsync(Of("watch-1", "patient-1", 1, new VitalReading(VitalKind.HeartRate, T0, 72.5)));

        var write = Assert.Single(_server.Writes);
        Assert.Equal("/api/v2/write", write.Path);
        Assert.Contains("precision=ms", write.Query);
        Assert.Contains("bucket=vitals", write.Query);
        Assert.Contains("org=clinic", write.Query);
        Assert.Equal("gzip", write.Headers["Content-Encoding"]);
        Assert.Equal("Token test-token-not-secret", write.Headers["Authorization"]);
        Assert.Matches($@"^vitals,device=watch-1,kind=heart_rate,patient=patient-1 value=72.5,commit=\d+i {T0}\n?$", write.Body);
    }

    [Fact]
    public async Task Busy_and_failing_answers_are_retried_until_the_write_is_taken()
    {
        _server.Then(503, """{"code":"unavailable","message":"shutting down"}""");
        _server.Then(429, """{"code":"too many requests","message":"slow down"}""", headers: ("Retry-After", "1"));
        _server.Then(500, """{"code":"internal error","message":"disk"}""");

        var (_, outcomes) = await _file.CommitAsync(Of("watch-1", "patient-1", 1, new VitalReading(VitalKind.HeartRate, T0, 72)));

        Assert.Equal(CommitOutcome.Stored, outcomes[0].Outcome);
        Assert.Equal(4, _server.Writes.Count());
        Assert.Single(_server.Writes.Select(request => request.Body).Distinct());
    }

    [Fact]
    public async Task A_refusal_that_waiting_cannot_change_fails_the_commit_at_once()
    {
        _server.Then(401, """{"code":"unauthorized","message":"unauthorized access"}""");

        await Assert.ThrowsAnyAsync<Exception>(() => _file.CommitAsync(Of("watch-1", "patient-1", 1, new VitalReading(VitalKind.HeartRate, T0, 72))));
        Assert.Single(_server.Writes);

        // Health says why, until a write is taken.
        Assert.Contains("Unauthorized", _file.Store.Refusal?.Reason);
        await _file.CommitAsync(Of("watch-1", "patient-1", 2, new VitalReading(VitalKind.HeartRate, T0 + 1_000, 73)));
        Assert.Null(_file.Store.Refusal);
    }

    [Fact]
    public async Task Commit_ids_increase_and_end_in_the_servers_own_three_digits_however_fast_they_come()
    {
        // Two servers committing in the same millisecond give different ids (unless they drew the same digits).
        var ids = new List<long>();
        for (var i = 0; i < 5; i++)
        {
            ids.Add((await _file.CommitAsync(Of("watch-1", "patient-1", (ulong)(i + 1), new VitalReading(VitalKind.HeartRate, T0 + i, 72)))).CommitId);
        }

        Assert.Equal(ids.Order(), ids);
        Assert.Equal(ids.Count, ids.Distinct().Count());
        Assert.All(ids, id => Assert.Equal(_file.Store.CommitNode, id % 1_000));
    }

    [Fact]
    public async Task A_commit_that_failed_leaves_its_batch_unrecorded_so_the_resend_is_stored()
    {
        // Long enough for a second try however busy the machine (a first write on a cold client can take a few hundred ms).
        using var impatient = new InfluxStoreFile(_server.Url, options =>
        {
            options.RetryFor = TimeSpan.FromSeconds(1);
            options.RetryDelay = TimeSpan.FromMilliseconds(20);
        });
        _server.FailingWith = 503;
        var batch = Of("watch-1", "patient-1", 9, new VitalReading(VitalKind.HeartRate, T0, 72));
        await Assert.ThrowsAnyAsync<Exception>(() => impatient.CommitAsync(batch));
        Assert.True(_server.Writes.Count() > 1, "the write was retried");

        _server.FailingWith = null;
        var (_, outcomes) = await impatient.CommitAsync(batch);
        Assert.Equal(CommitOutcome.Stored, outcomes[0].Outcome);
    }
}
