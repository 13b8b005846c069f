using Orleans;
using Orleans.Runtime;
using Orleans.Storage;
using Telemetry.Core.Alerts;
using Telemetry.Core.Storage;
using Telemetry.Core.Vitals;
using Telemetry.Storage.DuckDb;

namespace Telemetry.Storage.Tests.DuckDb;

/// <summary>Alert history in a real DuckDB file: positions in order, resent events stored once, alerts as they stand.</summary>
public sealed class DuckDbAlertStoreTests : IDisposable
{
    private static readonly DateTimeOffset T0 = new(2026, 11, 25, 9, 0, 0, TimeSpan.Zero);

    private readonly TemporaryDirectory _directory = new();
    private DuckDbDatabase _database;
    private DuckDbAlertStore _store;

    public DuckDbAlertStoreTests()
    {
        _database = new DuckDbDatabase(_directory.Options);
        _store = new DuckDbAlertStore(_database);
    }

    [Fact]
    public async Task Events_get_increasing_positions_and_a_resent_event_keeps_its_own()
    {
        var raised = Event("p-1", 1, AlertEventType.Raised, Alert("p-1~1", AlertStatus.Active));
        var cleared = Event("p-1", 2, AlertEventType.Cleared, Alert("p-1~1", AlertStatus.Cleared));

        var first = await _store.AppendAsync([raised]);
        var second = await _store.AppendAsync([raised, cleared]);

        Assert.Equal(1, first[0].Position);
        Assert.Equal([1L, 2L], second.Select(e => e.Position));
        var stored = await _store.ReadEventsAsync(0, null, 100);
        Assert.Equal([AlertEventType.Raised, AlertEventType.Cleared], stored.Select(e => e.Type));
        Assert.Equal("p-1~1", stored[1].Alert.AlertId);
        Assert.Equal(VitalKind.HeartRate, stored[1].Alert.Kind);
    }

    [Fact]
    public async Task An_alert_reads_as_its_latest_event_left_it_even_when_one_append_holds_several()
    {
        await _store.AppendAsync(
        [
            Event("p-1", 1, AlertEventType.Raised, Alert("p-1~1", AlertStatus.Active)),
            Event("p-1", 2, AlertEventType.Acknowledged, Alert("p-1~1", AlertStatus.Acknowledged)),
            Event("p-2", 1, AlertEventType.Raised, Alert("p-2~1", AlertStatus.Active, "p-2")),
        ]);

        Assert.Equal(AlertStatus.Acknowledged, (await _store.GetAsync("p-1~1"))?.Status);
        Assert.Null(await _store.GetAsync("p-1~9"));
        var open = await _store.QueryAsync(new AlertQuery(null, null, null, OpenOnly: true, Limit: 10));
        Assert.Equal(2, open.Count);

        await _store.AppendAsync([Event("p-1", 3, AlertEventType.Cleared, Alert("p-1~1", AlertStatus.Cleared))]);

        var stillOpen = await _store.QueryAsync(new AlertQuery(null, null, null, OpenOnly: true, Limit: 10));
        Assert.Equal("p-2~1", Assert.Single(stillOpen).AlertId);
        var history = await _store.QueryAsync(new AlertQuery("p-1", T0.AddMinutes(-1), T0.AddMinutes(1), OpenOnly: false, Limit: 10));
        Assert.Equal(AlertStatus.Cleared, Assert.Single(history).Status);
        Assert.Empty(await _store.QueryAsync(new AlertQuery("p-1", T0.AddMinutes(1), null, OpenOnly: false, Limit: 10)));
    }

    [Fact]
    public async Task A_list_read_page_by_page_after_its_last_alert_steps_over_none_raised_in_one_millisecond()
    {
        // Three alerts of one reading (raised at one moment), one before them and one after.
        string[] ids = ["p-1~1", "p-1~2", "p-1~3", "p-1~4", "p-1~5"];
        var raisedAt = new[] { T0, T0, T0, T0.AddMinutes(-1), T0.AddMinutes(1) };
        await _store.AppendAsync([.. ids.Select((id, i) => Event("p-1", i + 1, AlertEventType.Raised, Alert(id, AlertStatus.Active) with { RaisedAt = raisedAt[i] }))]);

        var paged = new List<string>();
        (DateTimeOffset, string)? after = null;
        IReadOnlyList<Alert> page;
        do
        {
            page = await _store.QueryAsync(new AlertQuery("p-1", null, null, OpenOnly: false, Limit: 2, after));
            paged.AddRange(page.Select(alert => alert.AlertId));
            after = page.Count > 0 ? (page[^1].RaisedAt, page[^1].AlertId) : null;
        }
        while (page.Count == 2 && paged.Count < 10);

        Assert.Equal(["p-1~5", "p-1~3", "p-1~2", "p-1~1", "p-1~4"], paged);
    }

    [Fact]
    public async Task Positions_continue_after_the_file_is_opened_again()
    {
        await _store.AppendAsync([Event("p-1", 1, AlertEventType.Raised, Alert("p-1~1", AlertStatus.Active))]);
        await _store.WriteCursorAsync("webhook:ward", 1);
        await _store.WriteCursorAsync("webhook:new", 0);
        await _store.SetWatchedAsync("p-1", true);
        await _store.SetWatchedAsync("p-2", true);
        await _store.SetWatchedAsync("p-2", false);

        _database.Dispose();
        _database = new DuckDbDatabase(_directory.Options);
        _store = new DuckDbAlertStore(_database);
        var appended = await _store.AppendAsync([Event("p-1", 2, AlertEventType.Cleared, Alert("p-1~1", AlertStatus.Cleared))]);

        Assert.Equal(2, appended[0].Position);
        Assert.Equal(2, await _store.LastPositionAsync());
        Assert.Equal(1, await _store.ReadCursorAsync("webhook:ward"));
        Assert.Equal(0, await _store.ReadCursorAsync("webhook:new"));
        Assert.Null(await _store.ReadCursorAsync("webhook:other"));
        Assert.Equal(["p-1"], await _store.WatchedPatientsAsync());
        Assert.Equal([2L], (await _store.ReadEventsAsync(1, "p-1", 10)).Select(e => e.Position));
        Assert.Empty(await _store.ReadEventsAsync(0, "p-9", 10));
    }

    [Fact]
    public async Task Retention_deletes_old_events_and_old_closed_alerts_keeps_open_ones_and_positions_go_on_after_the_latest()
    {
        var old = T0.AddDays(-400);
        await _store.AppendAsync(
        [
            new AlertEvent("p-1", 1, AlertEventType.Raised, old, Alert("p-1~1", AlertStatus.Active) with { RaisedAt = old }),
            new AlertEvent("p-1", 2, AlertEventType.Cleared, old.AddMinutes(5), Alert("p-1~1", AlertStatus.Cleared) with { RaisedAt = old }),
            new AlertEvent("p-1", 3, AlertEventType.Raised, old.AddMinutes(10), Alert("p-1~2", AlertStatus.Active) with { RaisedAt = old.AddMinutes(10) }),
            new AlertEvent("p-2", 1, AlertEventType.Raised, T0.AddDays(-1), Alert("p-2~1", AlertStatus.Active, "p-2") with { RaisedAt = T0.AddDays(-1) }),
        ]);

        // Three events and one alert: the alert raised long ago and still open stays.
        Assert.Equal(4, await _store.DeleteBeforeAsync(T0.AddDays(-365)));
        Assert.Equal([4L], (await _store.ReadEventsAsync(0, null, 10)).Select(e => e.Position));
        Assert.Null(await _store.GetAsync("p-1~1"));
        Assert.Equal(["p-2~1", "p-1~2"], (await _store.QueryAsync(new AlertQuery(null, null, null, OpenOnly: false, Limit: 10))).Select(a => a.AlertId));

        // Every event is old now, but the latest stays: positions go on from it when the file is opened again.
        Assert.Equal(0, await _store.DeleteBeforeAsync(T0));
        _database.Dispose();
        _database = new DuckDbDatabase(_directory.Options);
        _store = new DuckDbAlertStore(_database);

        // A deleted event handed over again (an outbox kept a year) is not stored again, nor its alert brought back.
        Assert.Empty(await _store.AppendAsync([new AlertEvent("p-1", 1, AlertEventType.Raised, old, Alert("p-1~1", AlertStatus.Active) with { RaisedAt = old })]));
        Assert.Null(await _store.GetAsync("p-1~1"));
        var appended = await _store.AppendAsync([Event("p-2", 2, AlertEventType.Cleared, Alert("p-2~1", AlertStatus.Cleared, "p-2") with { RaisedAt = T0.AddDays(-1) })]);

        Assert.Equal(5, appended[0].Position);
        Assert.Equal(AlertStatus.Cleared, (await _store.GetAsync("p-2~1"))!.Status);
        Assert.Equal(2, await _store.DeleteBeforeAsync(T0.AddDays(1)));
        Assert.Equal([5L], (await _store.ReadEventsAsync(0, null, 10)).Select(e => e.Position));
        Assert.Equal(["p-1~2"], (await _store.QueryAsync(new AlertQuery(null, null, null, OpenOnly: false, Limit: 10))).Select(a => a.AlertId));
    }

    [Fact]
    public async Task Retention_keeps_an_alert_raised_long_ago_and_cleared_since_the_cutoff()
    {
        var old = T0.AddDays(-400);
        var raised = Alert("p-1~1", AlertStatus.Active) with { RaisedAt = old };
        await _store.AppendAsync([new AlertEvent("p-1", 1, AlertEventType.Raised, old, raised)]);
        await _store.AppendAsync([new AlertEvent("p-1", 2, AlertEventType.Cleared, T0.AddDays(-1), raised with { Status = AlertStatus.Cleared, ClearedAt = T0.AddDays(-1) })]);
        await _store.AppendAsync([new AlertEvent("p-1", 3, AlertEventType.Raised, T0, Alert("p-1~2", AlertStatus.Active))]);

        // The raise event goes; the alert stays until its clearing is as old.
        Assert.Equal(1, await _store.DeleteBeforeAsync(T0.AddDays(-365)));
        Assert.Equal(AlertStatus.Cleared, (await _store.GetAsync("p-1~1"))!.Status);
        Assert.Equal(2, await _store.DeleteBeforeAsync(T0));
        Assert.Null(await _store.GetAsync("p-1~1"));
    }

    [Fact]
    public async Task Retention_deletes_a_long_history_in_chunks_and_counts_all_of_it()
    {
        var old = T0.AddDays(-400);
        var raised = Alert("p-1~1", AlertStatus.Active) with { RaisedAt = old };
        await _store.AppendAsync([.. Enumerable.Range(1, 12_000).Select(seq =>
            new AlertEvent("p-1", seq, seq == 1 ? AlertEventType.Raised : AlertEventType.Acknowledged, old.AddSeconds(seq), raised))]);
        await _store.AppendAsync([new AlertEvent("p-1", 12_001, AlertEventType.Cleared, T0, Alert("p-1~1", AlertStatus.Cleared) with { RaisedAt = old })]);

        // Every event but the latest; the alert, cleared since, stays.
        Assert.Equal(12_000, await _store.DeleteBeforeAsync(T0.AddDays(-365)));
        Assert.Equal([12_001L], (await _store.ReadEventsAsync(0, null, 10)).Select(e => e.Position));
        Assert.Equal(AlertStatus.Cleared, (await _store.GetAsync("p-1~1"))!.Status);
    }

    [Fact]
    public async Task Appends_made_at_once_by_many_patients_are_stored_together_in_order_and_a_resend_among_them_keeps_its_position()
    {
        var early = await _store.AppendAsync([Event("p-0", 1, AlertEventType.Raised, Alert("p-0~1", AlertStatus.Active, "p-0"))]);

        // Fifty patients raise at once, one patient raises and clears in the same append, and p-0 hands its stored
        // event over again (its outbox after a crash).
        var appends = Enumerable.Range(1, 50)
            .Select(i => _store.AppendAsync([Event($"p-{i}", 1, AlertEventType.Raised, Alert($"p-{i}~1", AlertStatus.Active, $"p-{i}"))]))
            .Append(_store.AppendAsync(
            [
                Event("p-99", 1, AlertEventType.Raised, Alert("p-99~1", AlertStatus.Active, "p-99")),
                Event("p-99", 2, AlertEventType.Cleared, Alert("p-99~1", AlertStatus.Cleared, "p-99")),
            ]))
            .Append(_store.AppendAsync([early[0] with { Position = 0 }]))
            .ToList();
        var answers = await Task.WhenAll(appends);

        Assert.Equal(early[0].Position, answers[^1][0].Position);
        var positions = answers.Take(51).SelectMany(events => events).Select(e => e.Position).Order().ToList();
        Assert.Equal(Enumerable.Range(2, 52).Select(i => (long)i), positions);
        var stored = await _store.ReadEventsAsync(0, null, 100);
        Assert.Equal(53, stored.Count);
        Assert.Equal(stored.OrderBy(e => e.Position).Select(e => e.Position), stored.Select(e => e.Position));
        Assert.Equal(AlertStatus.Cleared, (await _store.GetAsync("p-99~1"))?.Status);
        Assert.Equal(51, (await _store.QueryAsync(new AlertQuery(null, null, null, OpenOnly: true, Limit: 100))).Count);
    }

    [Fact]
    public async Task A_raised_alert_whose_id_is_already_stored_replaces_it_and_the_rest_of_its_group_is_stored_too()
    {
        // Alert ids are new when raised, unless the grain's state came back from an older copy of the file: the alert
        // is raised again under an id the alerts table holds.
        await _store.AppendAsync([Event("p-1", 1, AlertEventType.Raised, Alert("p-1~1", AlertStatus.Active))]);
        await _store.AppendAsync([Event("p-1", 2, AlertEventType.Cleared, Alert("p-1~1", AlertStatus.Cleared))]);

        var again = await _store.AppendAsync([Event("p-1", 3, AlertEventType.Raised, Alert("p-1~1", AlertStatus.Active) with { Value = 140 })]);
        var other = await _store.AppendAsync([Event("p-2", 1, AlertEventType.Raised, Alert("p-2~1", AlertStatus.Active, "p-2"))]);

        Assert.Equal(3, again[0].Position);
        Assert.Equal(4, other[0].Position);
        var alert = await _store.GetAsync("p-1~1");
        Assert.Equal((AlertStatus.Active, 140.0), (alert?.Status, alert?.Value));
        Assert.Equal(2, (await _store.QueryAsync(new AlertQuery(null, null, null, OpenOnly: true, Limit: 10))).Count);
        Assert.Equal(4, (await _store.ReadEventsAsync(0, null, 10)).Count);
    }

    [Fact]
    public async Task A_state_carrying_alert_events_stores_them_in_its_own_transaction_and_the_append_after_finds_them_stored()
    {
        var storage = new DuckDbGrainStorage(_database, new JsonStateSerializer());
        var outbox = new OutboxState { Rules = 3 };
        var state = new GrainState<OutboxState>(outbox);
        outbox.Outbox.Add(Event("p-1", 1, AlertEventType.Raised, Alert("p-1~1", AlertStatus.Active)));

        await storage.WriteStateAsync("alerts", PatientGrain("p-1"), state);

        // In the log and in the alerts before anything was appended: the state and its events were one commit.
        Assert.Equal(1, Assert.Single(await _store.ReadEventsAsync(0, "p-1", 10)).Position);
        Assert.Equal(AlertStatus.Active, (await _store.GetAsync("p-1~1"))?.Status);

        var appended = await _store.AppendAsync([.. outbox.Outbox]);
        Assert.Equal(1, Assert.Single(appended).Position);
        Assert.Equal("p-1~1", appended[0].Alert.AlertId);

        // The next change of the same grain, and an append of another patient's, follow in order.
        outbox.Outbox.Clear();
        outbox.Outbox.Add(Event("p-1", 2, AlertEventType.Cleared, Alert("p-1~1", AlertStatus.Cleared)));
        await storage.WriteStateAsync("alerts", PatientGrain("p-1"), state);
        Assert.Equal(2, Assert.Single(await _store.AppendAsync([.. outbox.Outbox])).Position);
        Assert.Equal(3, Assert.Single(await _store.AppendAsync([Event("p-2", 1, AlertEventType.Raised, Alert("p-2~1", AlertStatus.Active, "p-2"))])).Position);
        Assert.Equal([1L, 2L, 3L], (await _store.ReadEventsAsync(0, null, 10)).Select(e => e.Position));
        Assert.Equal(AlertStatus.Cleared, (await _store.GetAsync("p-1~1"))?.Status);

        var read = new GrainState<OutboxState>();
        await storage.ReadStateAsync("alerts", PatientGrain("p-1"), read);
        Assert.Equal(3, read.State?.Rules);
    }

    [Fact]
    public async Task A_state_write_refused_for_its_etag_stores_none_of_its_events()
    {
        var storage = new DuckDbGrainStorage(_database, new JsonStateSerializer());
        await storage.WriteStateAsync("alerts", PatientGrain("p-1"), new GrainState<OutboxState>(new OutboxState()));
        var outbox = new OutboxState();
        var stale = new GrainState<OutboxState>(outbox) { ETag = "not the stored one" };
        outbox.Outbox.Add(Event("p-1", 1, AlertEventType.Raised, Alert("p-1~1", AlertStatus.Active)));

        await Assert.ThrowsAsync<InconsistentStateException>(() => storage.WriteStateAsync("alerts", PatientGrain("p-1"), stale));

        Assert.Empty(await _store.ReadEventsAsync(0, null, 10));
        Assert.Null(await _store.GetAsync("p-1~1"));
        var read = new GrainState<OutboxState>();
        await storage.ReadStateAsync("alerts", PatientGrain("p-1"), read);
        Assert.Empty(read.State?.Outbox ?? [null!]);

        // Not taken for stored by the append after: it stores them.
        Assert.Equal(1, Assert.Single(await _store.AppendAsync([.. outbox.Outbox])).Position);
        Assert.Equal(1, Assert.Single(await _store.ReadEventsAsync(0, null, 10)).Position);
    }

    [Fact]
    public async Task Writes_answered_are_in_the_journal_and_a_crash_before_the_file_takes_them_loses_none_and_stores_none_twice()
    {
        // The file takes the journal's records only when read (or the server stops): what a crash finds is the journal.
        _database.Dispose();
        var options = Microsoft.Extensions.Options.Options.Create(new DuckDbOptions { Path = _directory.Options.Value.Path, JournalDelay = TimeSpan.FromDays(1) });
        _database = new DuckDbDatabase(options);
        _store = new DuckDbAlertStore(_database);
        var storage = new DuckDbGrainStorage(_database, new JsonStateSerializer());
        await _store.AppendAsync([Event("p-0", 1, AlertEventType.Raised, Alert("p-0~1", AlertStatus.Active, "p-0"))]);
        Assert.Single(await _store.ReadEventsAsync(0, null, 10));

        var outbox = new OutboxState { Rules = 7, Outbox = [Event("p-1", 1, AlertEventType.Raised, Alert("p-1~1", AlertStatus.Active))] };
        var state = new GrainState<OutboxState>(outbox);
        await storage.WriteStateAsync("alerts", PatientGrain("p-1"), state);
        outbox.Outbox = [Event("p-1", 2, AlertEventType.Cleared, Alert("p-1~1", AlertStatus.Cleared))];
        outbox.Rules = 8;
        await storage.WriteStateAsync("alerts", PatientGrain("p-1"), state);
        await storage.WriteStateAsync("devices", GrainId.Create("device", "d-1"), new GrainState<OutboxState>(new OutboxState { Rules = 1 }));
        var stale = new GrainState<OutboxState>(new OutboxState { Rules = 99 }) { ETag = "not the stored one" };
        await Assert.ThrowsAsync<InconsistentStateException>(() => storage.WriteStateAsync("alerts", PatientGrain("p-1"), stale));

        // Crashed now: the files as they stand, and a torn record at the journal's end (a write the crash cut short).
        var crashed = CopyFiles(_directory.Path);
        var journal = Path.Combine(crashed, "telemetry.state-journal");
        Assert.True(new FileInfo(journal).Length > 0);
        File.AppendAllText(journal, "\u0040\u0000\u0000\u0000torn");

        // The file itself had the first append only; opened again, the journal's records are written into it.
        using (var reopened = new DuckDbDatabase(Microsoft.Extensions.Options.Options.Create(new DuckDbOptions { Path = Path.Combine(crashed, "telemetry.duckdb") })))
        {
            Assert.Equal(0, new FileInfo(journal).Length);
            var store = new DuckDbAlertStore(reopened);
            Assert.Equal([1L, 2L, 3L], (await store.ReadEventsAsync(0, null, 10)).Select(e => e.Position));
            Assert.Equal(AlertStatus.Cleared, (await store.GetAsync("p-1~1"))?.Status);
            var read = new GrainState<OutboxState>();
            var reopenedStorage = new DuckDbGrainStorage(reopened, new JsonStateSerializer());
            await reopenedStorage.ReadStateAsync("alerts", PatientGrain("p-1"), read);
            Assert.Equal((8, state.ETag), (read.State?.Rules, read.ETag));
            var device = new GrainState<OutboxState>();
            await reopenedStorage.ReadStateAsync("devices", GrainId.Create("device", "d-1"), device);
            Assert.Equal(1, device.State?.Rules);

            // The outbox handed over again after the crash keeps its positions; the next event follows.
            Assert.Equal([1L, 2L], (await Task.WhenAll(
                store.AppendAsync([Event("p-1", 1, AlertEventType.Raised, Alert("p-1~1", AlertStatus.Active))]),
                store.AppendAsync([Event("p-1", 2, AlertEventType.Cleared, Alert("p-1~1", AlertStatus.Cleared))]))).Select(events => events[0].Position - 1));
            Assert.Equal(4, Assert.Single(await store.AppendAsync([Event("p-2", 1, AlertEventType.Raised, Alert("p-2~1", AlertStatus.Active, "p-2"))])).Position);
        }

        // A crash after the file took the records but before the journal was emptied: the same records, again.
        var before = File.ReadAllBytes(Path.Combine(_directory.Path, "telemetry.state-journal"));
        Assert.Equal(3, (await _store.ReadEventsAsync(0, null, 10)).Count);
        var again = CopyFiles(_directory.Path);
        File.WriteAllBytes(Path.Combine(again, "telemetry.state-journal"), before);
        using (var reopened = new DuckDbDatabase(Microsoft.Extensions.Options.Options.Create(new DuckDbOptions { Path = Path.Combine(again, "telemetry.duckdb") })))
        {
            var store = new DuckDbAlertStore(reopened);
            Assert.Equal([1L, 2L, 3L], (await store.ReadEventsAsync(0, null, 10)).Select(e => e.Position));
            Assert.Single(await store.QueryAsync(new AlertQuery("p-1", null, null, OpenOnly: false, Limit: 10)));
            var read = new GrainState<OutboxState>();
            await new DuckDbGrainStorage(reopened, new JsonStateSerializer()).ReadStateAsync("alerts", PatientGrain("p-1"), read);
            Assert.Equal(8, read.State?.Rules);
        }
    }

    [Fact]
    public async Task Stopping_writes_the_journal_into_the_file_and_a_write_after_it_fails()
    {
        _database.Dispose();
        var options = Microsoft.Extensions.Options.Options.Create(new DuckDbOptions { Path = _directory.Options.Value.Path, JournalDelay = TimeSpan.FromDays(1) });
        _database = new DuckDbDatabase(options);
        var storage = new DuckDbGrainStorage(_database, new JsonStateSerializer());
        var outbox = new OutboxState { Rules = 5, Outbox = [Event("p-1", 1, AlertEventType.Raised, Alert("p-1~1", AlertStatus.Active))] };
        await storage.WriteStateAsync("alerts", PatientGrain("p-1"), new GrainState<OutboxState>(outbox));
        var journal = Path.Combine(_directory.Path, "telemetry.state-journal");
        Assert.True(new FileInfo(journal).Length > 0);

        _database.Dispose();

        Assert.Equal(0, new FileInfo(journal).Length);
        await Assert.ThrowsAsync<ObjectDisposedException>(() => storage.WriteStateAsync("alerts", PatientGrain("p-2"), new GrainState<OutboxState>(new OutboxState())));
        _database = new DuckDbDatabase(_directory.Options);
        _store = new DuckDbAlertStore(_database);
        Assert.Equal(1, Assert.Single(await _store.ReadEventsAsync(0, null, 10)).Position);
        var read = new GrainState<OutboxState>();
        await new DuckDbGrainStorage(_database, new JsonStateSerializer()).ReadStateAsync("alerts", PatientGrain("p-2"), read);
        Assert.False(read.RecordExists);
    }

    [Fact]
    public async Task The_writer_goes_on_journaling_while_the_file_takes_the_records_before_and_a_crash_then_stores_each_once()
    {
        var storage = ReopenTakingTheJournalWhenRead();
        await storage.WriteStateAsync("alerts", PatientGrain("p-1"), Raising("p-1", rules: 1));

        // A read has the file take the journal's record; the file's transaction is held up beside the writer.
        using var gate = new ManualResetEventSlim();
        var held = HoldTheFilesNextTransaction(gate);
        var read = _store.ReadEventsAsync(0, null, 10);
        await held.WaitAsync(TimeSpan.FromMinutes(1));

        // Meanwhile another patient's alert is journaled and answered: it waits for no transaction of the file's (held
        // up for two minutes at most; the write is given half a minute).
        await storage.WriteStateAsync("alerts", PatientGrain("p-2"), Raising("p-2", rules: 2)).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.False(read.IsCompleted);

        // The read sees what was answered before it, and not the write after it, still only in the journal.
        _database.StateWrites.BeforeApplyingBeside = null;
        gate.Set();
        Assert.Equal(["p-1"], (await read).Select(e => e.PatientId));
        var journal = Path.Combine(_directory.Path, "telemetry.state-journal");
        Assert.True(new FileInfo(journal).Length > 0);

        // Crashed now: the journal holds both records, the file the first; opened again, each is stored once.
        var crashed = CopyFiles(_directory.Path);
        using (var reopened = new DuckDbDatabase(Microsoft.Extensions.Options.Options.Create(new DuckDbOptions { Path = Path.Combine(crashed, "telemetry.duckdb") })))
        {
            Assert.Equal([("p-1", 1L), ("p-2", 2L)], (await new DuckDbAlertStore(reopened).ReadEventsAsync(0, null, 10)).Select(e => (e.PatientId, e.Position)));
            var reopenedStorage = new DuckDbGrainStorage(reopened, new JsonStateSerializer());
            foreach (var (patient, rules) in new[] { ("p-1", 1), ("p-2", 2) })
            {
                var state = new GrainState<OutboxState>();
                await reopenedStorage.ReadStateAsync("alerts", PatientGrain(patient), state);
                Assert.Equal(rules, state.State?.Rules);
            }
        }

        // Not crashed: the next read has the file take the second record, and the journal, all in the file, is emptied.
        Assert.Equal([1L, 2L], (await _store.ReadEventsAsync(0, null, 10)).Select(e => e.Position));
        Assert.Equal(0, new FileInfo(journal).Length);
    }

    [Fact]
    public async Task A_journal_that_grows_while_the_file_takes_its_records_is_cut_down_to_the_rest_and_a_crash_then_loses_none()
    {
        var storage = ReopenTakingTheJournalWhenRead();
        _database.StateWrites.CutDownJournalFrom = 1;
        await storage.WriteStateAsync("alerts", PatientGrain("p-1"), Raising("p-1", rules: 1));
        var journal = Path.Combine(_directory.Path, "telemetry.state-journal");
        var first = new FileInfo(journal).Length;

        // The file takes the first record while the second is journaled beside it.
        using var gate = new ManualResetEventSlim();
        var held = HoldTheFilesNextTransaction(gate);
        var read = _store.ReadEventsAsync(0, null, 10);
        await held.WaitAsync(TimeSpan.FromMinutes(1));
        await storage.WriteStateAsync("alerts", PatientGrain("p-2"), Raising("p-2", rules: 2));
        var both = new FileInfo(journal).Length;
        _database.StateWrites.BeforeApplyingBeside = null;
        gate.Set();
        Assert.Equal(["p-1"], (await read).Select(e => e.PatientId));

        // The journal keeps only the second record, and takes the third after it.
        Assert.Equal(both - first, new FileInfo(journal).Length);
        await storage.WriteStateAsync("alerts", PatientGrain("p-3"), Raising("p-3", rules: 3));
        Assert.False(File.Exists(journal + ".next"));

        // Crashed now: the file holds the first record, the journal the others; opened again, each is stored once.
        var crashed = CopyFiles(_directory.Path);
        using (var reopened = new DuckDbDatabase(Microsoft.Extensions.Options.Options.Create(new DuckDbOptions { Path = Path.Combine(crashed, "telemetry.duckdb") })))
        {
            Assert.Equal([("p-1", 1L), ("p-2", 2L), ("p-3", 3L)], (await new DuckDbAlertStore(reopened).ReadEventsAsync(0, null, 10)).Select(e => (e.PatientId, e.Position)));
            var reopenedStorage = new DuckDbGrainStorage(reopened, new JsonStateSerializer());
            foreach (var (patient, rules) in new[] { ("p-1", 1), ("p-2", 2), ("p-3", 3) })
            {
                var state = new GrainState<OutboxState>();
                await reopenedStorage.ReadStateAsync("alerts", PatientGrain(patient), state);
                Assert.Equal(rules, state.State?.Rules);
            }
        }

        // Not crashed: the next read has the file take the rest, and the journal is emptied.
        Assert.Equal([1L, 2L, 3L], (await _store.ReadEventsAsync(0, null, 10)).Select(e => e.Position));
        Assert.Equal(0, new FileInfo(journal).Length);
    }

    [Fact]
    public async Task A_journal_that_cannot_be_cut_down_has_the_file_take_the_rest_at_once_and_is_emptied()
    {
        var storage = ReopenTakingTheJournalWhenRead();
        _database.StateWrites.CutDownJournalFrom = 1;
        var journal = Path.Combine(_directory.Path, "telemetry.state-journal");
        Directory.CreateDirectory(journal + ".next");
        await storage.WriteStateAsync("alerts", PatientGrain("p-1"), Raising("p-1", rules: 1));

        // The file takes the first record while the second is journaled beside it; the journal's copy cannot be made.
        using var gate = new ManualResetEventSlim();
        var held = HoldTheFilesNextTransaction(gate);
        var read = _store.ReadEventsAsync(0, null, 10);
        await held.WaitAsync(TimeSpan.FromMinutes(1));
        await storage.WriteStateAsync("alerts", PatientGrain("p-2"), Raising("p-2", rules: 2));
        _database.StateWrites.BeforeApplyingBeside = null;
        gate.Set();
        Assert.Equal("p-1", (await read).Select(e => e.PatientId).First()); // and p-2 when the file took it before the read ran

        // So the file takes the second at once, not a day later, and the journal is emptied.
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(1);
        while (new FileInfo(journal).Length > 0 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20);
        }

        Assert.Equal(0, new FileInfo(journal).Length);
        Assert.Equal([1L, 2L], (await _store.ReadEventsAsync(0, null, 10)).Select(e => e.Position));
    }

    [Fact]
    public async Task Stopping_while_the_file_takes_the_journal_beside_the_writer_waits_for_it_and_writes_the_rest()
    {
        var storage = ReopenTakingTheJournalWhenRead();
        await _store.AppendAsync([Event("p-1", 1, AlertEventType.Raised, Alert("p-1~1", AlertStatus.Active))]);
        using var gate = new ManualResetEventSlim();
        var held = HoldTheFilesNextTransaction(gate);
        var settled = _database.StateWrites.SettleAsync();
        await held.WaitAsync(TimeSpan.FromMinutes(1));
        await storage.WriteStateAsync("alerts", PatientGrain("p-2"), Raising("p-2", rules: 2));

        // Stopping waits for the transaction under way, then writes the record after it. (The wait for the file is a
        // settle rather than a read: a read's query would race the stop.)
        var database = _database;
        var stopping = Task.Run(database.Dispose);
        gate.Set();
        await stopping.WaitAsync(TimeSpan.FromMinutes(1));
        await settled.WaitAsync(TimeSpan.FromMinutes(1));
        Assert.Equal(0, new FileInfo(Path.Combine(_directory.Path, "telemetry.state-journal")).Length);

        _database = new DuckDbDatabase(_directory.Options);
        _store = new DuckDbAlertStore(_database);
        Assert.Equal([("p-1", 1L), ("p-2", 2L)], (await _store.ReadEventsAsync(0, null, 10)).Select(e => (e.PatientId, e.Position)));
    }

    [Fact]
    public async Task A_failed_write_of_the_journal_into_the_file_fails_the_read_waiting_for_it_and_keeps_the_records_for_the_next()
    {
        var storage = ReopenTakingTheJournalWhenRead();
        var outbox = new OutboxState { Rules = 1, Outbox = [Event("p-1", 1, AlertEventType.Raised, Alert("p-1~1", AlertStatus.Active))] };
        var state = new GrainState<OutboxState>(outbox);
        await storage.WriteStateAsync("alerts", PatientGrain("p-1"), state);

        _database.StateWrites.BeforeApplyingBeside = () => throw new IOException("the disk is full");
        var failure = await Assert.ThrowsAsync<IOException>(() => _store.ReadEventsAsync(0, null, 10));
        Assert.Equal("the disk is full", failure.Message);

        // Written on: the state's ETag still checked against the journal's, the next alert numbered after the first.
        outbox.Rules = 2;
        outbox.Outbox = [Event("p-1", 2, AlertEventType.Cleared, Alert("p-1~1", AlertStatus.Cleared))];
        await storage.WriteStateAsync("alerts", PatientGrain("p-1"), state);

        _database.StateWrites.BeforeApplyingBeside = null;
        Assert.Equal([1L, 2L], (await _store.ReadEventsAsync(0, null, 10)).Select(e => e.Position));
        var read = new GrainState<OutboxState>();
        await storage.ReadStateAsync("alerts", PatientGrain("p-1"), read);
        Assert.Equal((2, state.ETag), (read.State?.Rules, read.ETag));
        Assert.Equal(0, new FileInfo(Path.Combine(_directory.Path, "telemetry.state-journal")).Length);
    }

    /// <summary>Opens the file again with a journal the file takes only when read (or at a stop); returns its grain storage.</summary>
    private DuckDbGrainStorage ReopenTakingTheJournalWhenRead()
    {
        _database.Dispose();
        _database = new DuckDbDatabase(Microsoft.Extensions.Options.Options.Create(new DuckDbOptions { Path = _directory.Options.Value.Path, JournalDelay = TimeSpan.FromDays(1) }));
        _store = new DuckDbAlertStore(_database);
        return new DuckDbGrainStorage(_database, new JsonStateSerializer());
    }

    /// <summary>Holds the file's next transaction beside the journal's writer until <paramref name="gate"/> is set (two minutes at most); completes once it is held.</summary>
    private Task HoldTheFilesNextTransaction(ManualResetEventSlim gate)
    {
        var held = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _database.StateWrites.BeforeApplyingBeside = () =>
        {
            held.TrySetResult();
            gate.Wait(TimeSpan.FromMinutes(2));
        };
        return held.Task;
    }

    /// <summary>A patient's alert state raising its first alert.</summary>
    private static GrainState<OutboxState> Raising(string patientId, int rules) =>
        new(new OutboxState { Rules = rules, Outbox = [Event(patientId, 1, AlertEventType.Raised, Alert($"{patientId}~1", AlertStatus.Active, patientId))] });

    /// <summary>A copy of a folder's files as they stand, in a new folder inside the test's.</summary>
    private static string CopyFiles(string from)
    {
        var to = Path.Combine(from, "copy-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(to);
        foreach (var file in Directory.GetFiles(from))
        {
            File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
        }

        return to;
    }

    [Fact]
    public async Task States_with_events_and_appends_made_at_once_share_one_order_of_positions_and_survive_a_restart()
    {
        var storage = new DuckDbGrainStorage(_database, new JsonStateSerializer());
        var outboxes = Enumerable.Range(1, 40).Select(i => new OutboxState
        {
            Outbox = [Event($"p-{i}", 1, AlertEventType.Raised, Alert($"p-{i}~1", AlertStatus.Active, $"p-{i}"))],
        }).ToList();

        var writes = outboxes.Select((outbox, i) => storage.WriteStateAsync("alerts", PatientGrain($"p-{i + 1}"), new GrainState<OutboxState>(outbox))).ToList();
        var appends = Enumerable.Range(100, 20)
            .Select(i => _store.AppendAsync([Event($"p-{i}", 1, AlertEventType.Raised, Alert($"p-{i}~1", AlertStatus.Active, $"p-{i}"))]))
            .ToList();
        await Task.WhenAll(writes);
        var appended = await Task.WhenAll(appends);

        var stored = await _store.ReadEventsAsync(0, null, 100);
        Assert.Equal(Enumerable.Range(1, 60).Select(i => (long)i), stored.Select(e => e.Position));
        Assert.Equal(60, stored.Select(e => e.PatientId).Distinct().Count());
        Assert.All(appended, events => Assert.Contains(stored, e => e.Position == events[0].Position && e.PatientId == events[0].PatientId));

        // Opened again, the events the states carried are found where they were stored, not stored twice.
        _database.Dispose();
        _database = new DuckDbDatabase(_directory.Options);
        _store = new DuckDbAlertStore(_database);
        var again = await Task.WhenAll(outboxes.Select(outbox => _store.AppendAsync([.. outbox.Outbox])));
        Assert.Equal(
            outboxes.Select(outbox => stored.Single(e => e.PatientId == outbox.Outbox[0].PatientId).Position),
            again.Select(events => Assert.Single(events).Position));
        Assert.Equal(60, (await _store.ReadEventsAsync(0, null, 100)).Count);
        Assert.Equal(61, Assert.Single(await _store.AppendAsync([Event("p-1", 2, AlertEventType.Cleared, Alert("p-1~1", AlertStatus.Cleared))])).Position);
    }

    public void Dispose()
    {
        _database.Dispose();
        _directory.Dispose();
    }

    private static GrainId PatientGrain(string patientId) => GrainId.Create("patient", patientId);

    private static AlertEvent Event(string patientId, long seq, AlertEventType type, Alert alert) =>
        new(patientId, seq, type, T0.AddSeconds(seq), alert);

    private static Alert Alert(string alertId, AlertStatus status, string patientId = "p-1") =>
        new(alertId, patientId, "hr-high", AlertRuleType.Threshold, AlertCategory.Clinical, AlertPriority.Medium, VitalKind.HeartRate, status,
            "Heart rate 130 /min is at or above 120 /min", 130, T0, T0, ClearedAt: status == AlertStatus.Cleared ? T0.AddMinutes(5) : null);

    /// <summary>A grain state with an outbox, as a patient's alert state is.</summary>
    public sealed class OutboxState : IAlertOutbox
    {
        public int Rules { get; set; }

        public List<AlertEvent> Outbox { get; set; } = [];

        IReadOnlyList<AlertEvent> IAlertOutbox.PendingEvents => Outbox;
    }
}
