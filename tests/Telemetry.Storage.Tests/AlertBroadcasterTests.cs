using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Telemetry.Core.Alerts;
using Telemetry.Core.Vitals;
using Telemetry.Storage.DuckDb;
using Telemetry.Storage.Tests.DuckDb;

namespace Telemetry.Storage.Tests;

/// <summary>
/// Live alert streams' order over a real DuckDB alert log: an event whose grain hands it on late is read from the log
/// and goes before the events stored after it, so a stream never sends a later position first.
/// </summary>
public sealed class AlertBroadcasterTests : IDisposable
{
    private static readonly DateTimeOffset T0 = new(2026, 11, 25, 9, 0, 0, TimeSpan.Zero);

    private readonly TemporaryDirectory _directory = new();
    private readonly DuckDbDatabase _database;
    private readonly DuckDbAlertStore _store;
    private readonly FakeTimeProvider _clock = new(T0);
    private readonly AlertBroadcaster _broadcaster;

    public AlertBroadcasterTests()
    {
        _database = new DuckDbDatabase(_directory.Options);
        _store = new DuckDbAlertStore(_database);
        _broadcaster = new AlertBroadcaster(_store, _clock, NullLogger<AlertBroadcaster>.Instance);
    }

    public void Dispose()
    {
        _broadcaster.Started.Wait(TimeSpan.FromSeconds(30));
        _broadcaster.Dispose();
        _database.Dispose();
        _directory.Dispose();
    }

    [Fact]
    public async Task A_position_not_handed_on_in_time_is_read_from_the_log_and_goes_first()
    {
        // Started on an empty log: the order starts at its first position.
        await _broadcaster.Started;
        var stored = await _store.AppendAsync([Raised("p-1", 1), Raised("p-2", 1), Raised("p-1", 2)]);
        Assert.Equal([1L, 2, 3], stored.Select(item => item.Position));
        using var all = _broadcaster.Subscribe(null);
        using var first = _broadcaster.Subscribe("p-1");

        _broadcaster.Publish([stored[0]]);
        Assert.Equal(1, (await NextAsync(all)).Position);

        // p-2's grain is slow to hand its event on: p-1's later one waits for it, then it is read from the log.
        _broadcaster.Publish([stored[2]]);
        _clock.Advance(AlertBroadcaster.MaxWait);
        Assert.Equal(2, (await NextAsync(all)).Position);
        Assert.Equal(3, (await NextAsync(all)).Position);

        // Handed on at last, it is not sent again.
        _broadcaster.Publish([stored[1]]);
        _broadcaster.Publish([await Next(Raised("p-1", 3))]);
        Assert.Equal(4, (await NextAsync(all)).Position);
        var ofFirst = await DrainAsync(first, 3);
        Assert.Equal([1L, 3, 4], ofFirst);
        Assert.False(all.Events.TryRead(out _));
    }

    [Fact]
    public async Task After_a_restart_history_handed_on_again_goes_at_once_and_the_order_starts_after_it()
    {
        var history = await _store.AppendAsync([Raised("p-1", 1), Raised("p-2", 1)]);
        var restarted = new AlertBroadcaster(_store, _clock, NullLogger<AlertBroadcaster>.Instance);
        await restarted.Started;
        using var all = restarted.Subscribe(null);

        // p-2's outbox, handed on again as its grain comes back after a crash.
        restarted.Publish([history[1]]);
        Assert.Equal(2, (await NextAsync(all)).Position);

        // New events are ordered from the log's latest position at the start on.
        var fresh = await _store.AppendAsync([Raised("p-1", 2), Raised("p-2", 2)]);
        restarted.Publish([fresh[1]]);
        _clock.Advance(AlertBroadcaster.MaxWait);
        var positions = await DrainAsync(all, 2);
        Assert.Equal([3L, 4], positions);
    }

    [Fact]
    public async Task Every_gap_before_the_latest_waiting_event_is_read_at_once()
    {
        await _broadcaster.Started;
        var stored = await _store.AppendAsync([.. Enumerable.Range(1, 5).Select(seq => Raised($"p-{seq}", 1))]);
        using var all = _broadcaster.Subscribe(null);
        _broadcaster.Publish([stored[0]]);
        Assert.Equal(1, (await NextAsync(all)).Position);

        // 2 and 4 are slow: 3 waits its while, 5 half of it; both gaps are read when 3's runs out.
        _broadcaster.Publish([stored[2]]);
        _clock.Advance(AlertBroadcaster.MaxWait / 2);
        _broadcaster.Publish([stored[4]]);
        _clock.Advance(AlertBroadcaster.MaxWait / 2);
        var positions = await DrainAsync(all, 4);
        Assert.Equal([2L, 3, 4, 5], positions);
    }

    [Fact]
    public async Task When_the_log_cannot_be_read_in_time_what_waits_goes_and_the_missing_one_when_it_comes()
    {
        await _broadcaster.Started;
        // The database file's next take of the alert journal is held, and with it every read of the log.
        using var gate = new ManualResetEventSlim();
        var held = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _database.StateWrites.BeforeApplyingBeside = () =>
        {
            held.TrySetResult();
            gate.Wait(TimeSpan.FromMinutes(2));
        };

        try
        {
            var stored = await _store.AppendAsync([Raised("p-1", 1), Raised("p-2", 1), Raised("p-1", 2)]);
            using var all = _broadcaster.Subscribe(null);
            _broadcaster.Publish([stored[0]]);
            Assert.Equal(1, (await NextAsync(all)).Position);

            _broadcaster.Publish([stored[2]]);
            _clock.Advance(AlertBroadcaster.MaxWait);
            await held.Task.WaitAsync(TimeSpan.FromSeconds(30));
            Assert.False(all.Events.TryRead(out _));

            _clock.Advance(AlertBroadcaster.FillTimeout);
            Assert.Equal(3, (await NextAsync(all)).Position);
            _broadcaster.Publish([stored[1]]);
            Assert.Equal(2, (await NextAsync(all)).Position);
        }
        finally
        {
            _database.StateWrites.BeforeApplyingBeside = null;
            gate.Set();
        }
    }

    [Fact]
    public async Task With_no_stream_subscribed_a_gap_is_not_read()
    {
        await _broadcaster.Started;
        var stored = await _store.AppendAsync([Raised("p-1", 1), Raised("p-2", 1), Raised("p-1", 2), Raised("p-2", 2)]);
        using var gate = new ManualResetEventSlim();
        _database.StateWrites.BeforeApplyingBeside = () => gate.Wait(TimeSpan.FromMinutes(2));
        try
        {
            // Every read of the log is held now: a read made for the gap at 2 would hold everything after it.
            _broadcaster.Publish([stored[0]]);
            _broadcaster.Publish([stored[2]]);
            _clock.Advance(AlertBroadcaster.MaxWait);

            using var all = _broadcaster.Subscribe(null);
            _broadcaster.Publish([stored[3]]);
            Assert.Equal(4, (await NextAsync(all)).Position);
        }
        finally
        {
            _database.StateWrites.BeforeApplyingBeside = null;
            gate.Set();
        }
    }

    private async Task<AlertEvent> Next(AlertEvent item) => (await _store.AppendAsync([item])).Single();

    private static async Task<AlertEvent> NextAsync(AlertBroadcaster.Subscription subscription)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        return await subscription.Events.ReadAsync(timeout.Token);
    }

    private static async Task<long[]> DrainAsync(AlertBroadcaster.Subscription subscription, int count)
    {
        var positions = new long[count];
        for (var i = 0; i < count; i++)
        {
            positions[i] = (await NextAsync(subscription)).Position;
        }

        Assert.False(subscription.Events.TryRead(out _));
        return positions;
    }

    private static AlertEvent Raised(string patientId, long seq) =>
        new(patientId, seq, AlertEventType.Raised, T0.AddSeconds(seq), new Alert(
            $"{patientId}~{seq}", patientId, "hr-high", AlertRuleType.Threshold, AlertCategory.Clinical, AlertPriority.Medium, VitalKind.HeartRate,
            AlertStatus.Active, "Heart rate 130 /min is at or above 120 /min", 130, T0, T0));
}
