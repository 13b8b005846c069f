using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Telemetry.Core.Alerts;
using Telemetry.Core.Storage;
using Telemetry.Storage.Redis;
using Telemetry.Testing;
using Xunit;

namespace Telemetry.Storage.Tests.Redis;

/// <summary>The cluster-mode stores against a real Redis: two connections stand for two servers of a cluster.</summary>
public sealed class RedisStoreTests : IAsyncLifetime
{
    private static readonly DateTimeOffset T0 = new(2026, 11, 24, 10, 0, 0, TimeSpan.Zero);

    private RedisServer _redis = null!;
    private RedisConnection _first = null!;
    private RedisConnection _second = null!;

    public async Task InitializeAsync()
    {
        _redis = await RedisServer.StartAsync();
        _first = Connect("ward");
        _second = Connect("ward");
    }

    public async Task DisposeAsync()
    {
        await _first.DisposeAsync();
        await _second.DisposeAsync();
        await _redis.DisposeAsync();
    }

    [Fact]
    public async Task Alert_events_get_positions_in_order_and_an_event_handed_over_again_keeps_its_own()
    {
        var store = new RedisAlertStore(_first);
        var other = new RedisAlertStore(_second);

        var raised = await store.AppendAsync([Event("patient-1", 1, AlertStatus.Active), Event("patient-2", 1, AlertStatus.Active)]);
        var again = await other.AppendAsync([Event("patient-1", 1, AlertStatus.Active), Event("patient-1", 2, AlertStatus.Cleared)]);

        Assert.Equal([1L, 2L], raised.Select(item => item.Position));
        Assert.Equal([1L, 3L], again.Select(item => item.Position));
        Assert.Equal(3, await other.LastPositionAsync());
        Assert.Equal([2L, 3L], (await other.ReadEventsAsync(1, null, 10)).Select(item => item.Position));
        var patient = await store.ReadEventsAsync(0, "patient-1", 10);
        Assert.Equal([1L, 3L], patient.Select(item => item.Position));
        Assert.Equal(2, patient[1].Seq);
        Assert.Equal("patient-1~1", patient[1].Alert.AlertId);
    }

    [Fact]
    public async Task Alerts_are_queried_as_they_stand_newest_first_and_open_only_when_asked()
    {
        var store = new RedisAlertStore(_first);
        await store.AppendAsync([Event("patient-1", 1, AlertStatus.Active, episode: 1, raisedAt: T0)]);
        await store.AppendAsync([Event("patient-1", 2, AlertStatus.Active, episode: 2, raisedAt: T0.AddMinutes(5))]);
        await store.AppendAsync([Event("patient-2", 1, AlertStatus.Active, episode: 1, raisedAt: T0.AddMinutes(1))]);
        await store.AppendAsync([Event("patient-1", 3, AlertStatus.Cleared, episode: 1, raisedAt: T0)]);

        var all = await store.QueryAsync(new AlertQuery(null, null, null, OpenOnly: false, Limit: 10));
        var open = await store.QueryAsync(new AlertQuery("patient-1", null, null, OpenOnly: true, Limit: 10));
        var window = await store.QueryAsync(new AlertQuery(null, T0, T0.AddMinutes(5), OpenOnly: false, Limit: 10));

        Assert.Equal(["patient-1~2", "patient-2~1", "patient-1~1"], all.Select(alert => alert.AlertId));
        Assert.Equal(AlertStatus.Cleared, all[2].Status);
        Assert.Equal(["patient-1~2"], open.Select(alert => alert.AlertId));
        Assert.Equal(["patient-2~1", "patient-1~1"], window.Select(alert => alert.AlertId));
        Assert.Equal(AlertStatus.Cleared, (await new RedisAlertStore(_second).GetAsync("patient-1~1"))!.Status);
        Assert.Null(await store.GetAsync("patient-9~1"));
    }

    [Fact]
    public async Task Retention_deletes_old_events_and_old_closed_alerts_keeps_open_ones_and_positions_go_on()
    {
        var store = new RedisAlertStore(_first);
        var old = T0.AddDays(-400);
        await store.AppendAsync([Event("patient-1", 1, AlertStatus.Active, episode: 1, raisedAt: old)]);
        await store.AppendAsync([Event("patient-1", 2, AlertStatus.Cleared, episode: 1, raisedAt: old)]);
        await store.AppendAsync([Event("patient-1", 3, AlertStatus.Active, episode: 2, raisedAt: old.AddMinutes(10))]);
        await store.AppendAsync([Event("patient-2", 1, AlertStatus.Active, episode: 1, raisedAt: T0.AddDays(-1))]);

        // Three events and one alert: the alert raised long ago and still open stays. The second server finds nothing more.
        Assert.Equal(4, await store.DeleteBeforeAsync(T0.AddDays(-365)));
        Assert.Equal(0, await new RedisAlertStore(_second).DeleteBeforeAsync(T0.AddDays(-365)));

        Assert.Equal([4L], (await store.ReadEventsAsync(0, null, 10)).Select(item => item.Position));
        Assert.Empty(await store.ReadEventsAsync(0, "patient-1", 10));
        Assert.Null(await store.GetAsync("patient-1~1"));
        Assert.Equal(["patient-2~1", "patient-1~2"], (await store.QueryAsync(new AlertQuery(null, null, null, OpenOnly: false, Limit: 10))).Select(alert => alert.AlertId));
        Assert.Equal(["patient-1~2"], (await store.QueryAsync(new AlertQuery("patient-1", null, null, OpenOnly: false, Limit: 10))).Select(alert => alert.AlertId));

        // A deleted event handed over again (an outbox kept a year) is not stored again, nor its alert brought back.
        Assert.Empty(await new RedisAlertStore(_second).AppendAsync([Event("patient-1", 1, AlertStatus.Active, episode: 1, raisedAt: old)]));
        Assert.Null(await store.GetAsync("patient-1~1"));

        // Positions go on from the counter: a consumer standing at 4 misses nothing.
        var next = await store.AppendAsync([Event("patient-2", 2, AlertStatus.Cleared, episode: 1, raisedAt: T0.AddDays(-1))]);
        Assert.Equal(5, next[0].Position);
        Assert.Equal([5L], (await store.ReadEventsAsync(4, null, 10)).Select(item => item.Position));
    }

    [Fact]
    public async Task Retention_steps_over_an_event_stamped_ahead_and_keeps_an_alert_cleared_since_the_cutoff()
    {
        var store = new RedisAlertStore(_first);
        var old = T0.AddDays(-400);

        // At the lowest position, an event from a server whose clock ran a month ahead; then an old one.
        var ahead = Event("patient-5", 1, AlertStatus.Active, episode: 1, raisedAt: old);
        await store.AppendAsync([ahead with { At = T0.AddDays(30) }]);
        await store.AppendAsync([Event("patient-5", 2, AlertStatus.Cleared, episode: 1, raisedAt: old)]);

        // An alert raised long ago and cleared only yesterday.
        var raised = Event("patient-6", 1, AlertStatus.Active, episode: 1, raisedAt: old);
        await store.AppendAsync([raised]);
        await store.AppendAsync([new AlertEvent("patient-6", 2, AlertEventType.Cleared, T0.AddDays(-1), raised.Alert with { Status = AlertStatus.Cleared, ClearedAt = T0.AddDays(-1) })]);

        // Two old events and patient-5's alert; the event stamped ahead, yesterday's and patient-6's alert stay.
        Assert.Equal(3, await store.DeleteBeforeAsync(T0.AddDays(-365)));
        Assert.Equal([1L, 4L], (await store.ReadEventsAsync(0, null, 10)).Select(item => item.Position));
        Assert.Null(await store.GetAsync("patient-5~1"));
        Assert.Equal(AlertStatus.Cleared, (await store.GetAsync("patient-6~1"))!.Status);
    }

    [Fact]
    public async Task Retention_pages_through_a_long_history_stepping_over_open_alerts()
    {
        var store = new RedisAlertStore(_first);
        var old = T0.AddDays(-400);

        // 1,200 alerts raised long ago, one event each; every hundredth still open.
        for (var episode = 1; episode <= 1_200; episode++)
        {
            await store.AppendAsync([Event("patient-1", episode, episode % 100 == 0 ? AlertStatus.Active : AlertStatus.Cleared, episode, old.AddMinutes(episode))]);
        }

        Assert.Equal(1_200 + 1_188, await store.DeleteBeforeAsync(T0.AddDays(-365)));
        var left = await store.QueryAsync(new AlertQuery("patient-1", null, null, OpenOnly: false, Limit: 2_000));
        Assert.Equal(Enumerable.Range(1, 12).Select(i => $"patient-1~{(13 - i) * 100}"), left.Select(alert => alert.AlertId));
        Assert.Empty(await store.ReadEventsAsync(0, null, 10));
    }

    [Fact]
    public async Task Cursors_and_watched_patients_are_shared()
    {
        var store = new RedisAlertStore(_first);
        var other = new RedisAlertStore(_second);

        await store.WriteCursorAsync("webhook:pager", 42);
        await store.WriteCursorAsync("webhook:new", 0);
        await store.SetWatchedAsync("patient-2", true);
        await store.SetWatchedAsync("patient-1", true);
        await other.SetWatchedAsync("patient-2", false);

        Assert.Equal(42, await other.ReadCursorAsync("webhook:pager"));
        Assert.Equal(0, await other.ReadCursorAsync("webhook:new"));
        Assert.Null(await other.ReadCursorAsync("webhook:other"));
        Assert.Equal(["patient-1"], await other.WatchedPatientsAsync());
    }

    [Fact]
    public async Task A_list_read_page_by_page_after_its_last_alert_steps_over_none_raised_in_one_millisecond_and_keeps_to_its_range()
    {
        var store = new RedisAlertStore(_first);
        var raisedAt = new[] { T0, T0, T0, T0.AddMinutes(-1), T0.AddMinutes(1) };
        for (var i = 0; i < raisedAt.Length; i++)
        {
            await store.AppendAsync([Event("patient-1", i + 1, AlertStatus.Active, episode: i + 1, raisedAt: raisedAt[i])]);
        }

        async Task<List<string>> PagedAsync(DateTimeOffset? to)
        {
            var paged = new List<string>();
            (DateTimeOffset, string)? after = null;
            IReadOnlyList<Alert> page;
            do
            {
                page = await store.QueryAsync(new AlertQuery("patient-1", null, to, OpenOnly: false, Limit: 2, after));
                paged.AddRange(page.Select(alert => alert.AlertId));
                after = page.Count > 0 ? (page[^1].RaisedAt, page[^1].AlertId) : null;
            }
            while (page.Count == 2 && paged.Count < 10);
            return paged;
        }

        Assert.Equal(["patient-1~5", "patient-1~3", "patient-1~2", "patient-1~1", "patient-1~4"], await PagedAsync(null));
        Assert.Equal(["patient-1~3", "patient-1~2", "patient-1~1", "patient-1~4"], await PagedAsync(T0.AddSeconds(1)));
        Assert.Equal(["patient-1~4"], await PagedAsync(T0));

        // After an alert raised before the range: nothing (not the range read the wrong way round).
        var before = (T0.AddMinutes(-1), "patient-1~4");
        Assert.Empty(await store.QueryAsync(new AlertQuery("patient-1", T0, null, OpenOnly: false, Limit: 2, before)));
    }

    [Fact]
    public async Task A_care_team_changed_on_one_server_is_read_on_the_other_which_is_told()
    {
        await using var store = new RedisCareTeamStore(_first);
        await using var other = new RedisCareTeamStore(_second);
        await store.ReadAllAsync();
        await other.ReadAllAsync();
        var told = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        other.ChangedElsewhere += () => told.TrySetResult();
        var toldSelf = false;
        store.ChangedElsewhere += () => toldSelf = true;

        await store.SetAsync("ward-7", ["patient-2", "patient-1", "patient-1"]);
        await told.Task.WaitAsync(TimeSpan.FromSeconds(10));

        var teams = await other.ReadAllAsync();
        Assert.Equal(["patient-1", "patient-2"], teams["ward-7"].Order());

        // Nor does its own server's reading of the version take it for a change made elsewhere.
        await Task.Delay(RedisCareTeamStore.VersionPoll * 2.5);
        Assert.False(toldSelf);

        await other.SetAsync("ward-7", []);
        Assert.Empty(await store.ReadAllAsync());
    }

    [Fact]
    public async Task A_care_team_change_whose_announcement_was_lost_is_found_by_the_other_server_all_the_same()
    {
        await using var other = new RedisCareTeamStore(_second);
        await other.ReadAllAsync();
        var told = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        other.ChangedElsewhere += () => told.TrySetResult();

        // What a server leaves that changed a team and could not announce it (or announced it while the other was not
        // listening): the change and its version, and no message.
        var database = await _first.DatabaseAsync();
        await database.HashSetAsync(_first.Key("care-teams"), "ward-7", """["patient-9"]""");
        await database.StringIncrementAsync(_first.Key("care-teams:version"));

        await told.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(["patient-9"], (await other.ReadAllAsync())["ward-7"]);
    }

    [Fact]
    public async Task The_directory_lists_patients_once_in_id_order_page_by_page_with_care_team_and_watched_patients()
    {
        var directory = new RedisPatientDirectory(_first);
        await directory.RegisterAsync("patient-3");
        await directory.RegisterAsync("patient-1");
        await directory.RegisterAsync("patient-1");
        await new RedisCareTeamStore(_second).SetAsync("ward-7", ["patient-2"]);
        await new RedisAlertStore(_second).SetWatchedAsync("patient-4", true);

        var other = new RedisPatientDirectory(_second);
        Assert.Equal(["patient-1", "patient-2"], await other.ListAsync(2));
        Assert.Equal(["patient-3", "patient-4"], await other.ListAsync(5, "patient-2"));
        Assert.Empty(await other.ListAsync(5, "patient-4"));
        Assert.True(await other.ContainsAsync("patient-2"));
        Assert.True(await other.ContainsAsync("patient-4"));
        Assert.False(await other.ContainsAsync("patient-5"));
    }

    [Fact]
    public async Task Clusters_with_other_ids_share_nothing()
    {
        await using var elsewhere = Connect("clinic-b");
        await new RedisPatientDirectory(_first).RegisterAsync("patient-1");
        await new RedisAlertStore(_first).AppendAsync([Event("patient-1", 1, AlertStatus.Active)]);

        Assert.Empty(await new RedisPatientDirectory(elsewhere).ListAsync(10));
        Assert.Equal(0, await new RedisAlertStore(elsewhere).LastPositionAsync());
    }

    private RedisConnection Connect(string clusterId) => new(
        Options.Create(new TelemetryClusterOptions { Redis = _redis.ConnectionString, ClusterId = clusterId }),
        NullLogger<RedisConnection>.Instance);

    private static AlertEvent Event(string patientId, long seq, AlertStatus status, int episode = 1, DateTimeOffset? raisedAt = null)
    {
        var at = raisedAt ?? T0;
        var alert = new Alert(
            $"{patientId}~{episode}", patientId, "rule-1", AlertRuleType.Threshold, AlertCategory.Clinical, AlertPriority.High,
            Core.Vitals.VitalKind.HeartRate, status, "heart rate high", 130, at, at, ClearedAt: status == AlertStatus.Cleared ? at : null);
        return new AlertEvent(patientId, seq, status == AlertStatus.Cleared ? AlertEventType.Cleared : AlertEventType.Raised, at, alert);
    }
}
