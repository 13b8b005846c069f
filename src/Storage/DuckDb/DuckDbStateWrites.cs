using System.Collections.Concurrent;
using System.Runtime.ExceptionServices;
using System.Text.Json;
using DuckDB.NET.Data;
using DuckDB.NET.Native;
using Microsoft.Extensions.Logging;
using Orleans.Runtime;
using Orleans.Storage;
using Telemetry.Core;
using Telemetry.Core.Alerts;

namespace Telemetry.Storage.DuckDb;

/// <summary>
/// The database file's one writer of grain state and the alert log. Writes group themselves (see
/// <see cref="WriteGroups{TRequest, TResult}"/>); a group is checked (each state change against its ETag), given its
/// events' positions, and appended to the <see cref="StateJournal"/> beside the file, flushed to the disk, before any of
/// its writers is answered. The journal's records are written into the database file later, many in one transaction:
/// within <see cref="DuckDbOptions.JournalDelay"/>, before any read of the alert log (<see cref="SettleAsync(CancellationToken)"/>) and any read
/// of a grain's state the journal holds (<see cref="SettleAsync(string, string, CancellationToken)"/>), when the server stops,
/// and, for what a crash left in the journal, when the file is opened again. A DuckDB transaction costs a few
/// milliseconds however little it writes (tens on a loaded machine); a record in the journal, a fraction of one, and an
/// alert waits for no more: the transaction runs beside the writer, which goes on journaling meanwhile, and the
/// journal is emptied once the file holds every record in it (or, while records keep coming, cut down to the others).
/// <para>
/// A grain state that carries alert events (<see cref="IAlertOutbox"/>) is written with them: the events are stored in
/// the state's record, so the state and the log never disagree. The grain then hands the same events to
/// <see cref="AppendAsync"/>, which finds them here and answers at once.
/// </para>
/// <para>
/// Positions are handed out in this one writer and the records are written to the file in order, so a reader that reads
/// "after position N" never sees a gap fill in later.
/// </para>
/// </summary>
internal sealed partial class DuckDbStateWrites : IDisposable
{
    private static readonly TimeSpan RetryDelay = TimeSpan.FromSeconds(2);

    // Events stored with a grain's state and not yet asked for by its append, the latest few thousand (oldest dropped
    // first). The append follows the state write at once; an entry stays only when a grain stops in between, and an
    // append that misses finds its events stored anyway.
    private const int MaxStoredWithState = 4_096;

    // Events, and alerts, deleted by retention in one transaction at most.
    private const int DeletionChunk = 5_000;

    // Records waiting for the database file, at most: beyond, a write first writes them (or fails, when it cannot).
    private const int MaxPendingRecords = 1_024;

    // The size of the records the file holds from which a write into the file that ends with newer records waiting cuts
    // the journal down to those: under a steady stream of alerts each may end so, and the journal is emptied only when
    // none waits. Should cutting it down fail, the next write into the file goes at once instead, until the journal is
    // emptied.
    private const long CutDownJournalBytes = 1024 * 1024;

    // The journal's size at which, should it not have been emptied or cut down all the same (cutting it down failed),
    // the writer has the file take every record itself before it journals more (the writes then wait for that one
    // transaction).
    private const long MaxJournalBytes = 64L * 1024 * 1024;

    // ETags remembered, at most; forgotten all at once when the file holds every record, and read from it again.
    private const int MaxKnownETags = 200_000;

    private readonly DuckDbDatabase _database;
    private readonly ILogger _logger;
    private readonly StateJournal _journal;
    private readonly WriteGroups<Write, Written> _writes;
    private readonly Timer _applyTimer;
    private readonly TimeSpan _applyDelay;
    private readonly Lock _storedLock = new();
    private readonly Dictionary<(string PatientId, long Seq), AlertEvent> _storedWithState = [];
    private readonly Queue<(string PatientId, long Seq)> _storedOrder = new();

    // Only the writer (one group at a time) reads and writes these. Every state the journal holds and the file does not
    // yet has its ETag here, so one missing from here is read from the file.
    private readonly List<StateJournalRecord> _pending = [];
    private readonly Dictionary<(string PatientId, long Seq), long> _pendingPositions = [];
    private readonly Dictionary<(string StateName, string GrainId), string?> _etags = [];
    private long _lastPosition;
    private readonly Dictionary<string, long> _lastSeq;

    // The alert history before this was deleted by retention (writer only): an event from before it that is not found
    // stored is one deleted (or one that would be), and is not stored again.
    private DateTime _deletedBefore;

    // Writer only: the write into the file under way beside the writer (of the first of _pending), if one is; the
    // records journaled and written into the file since the start; the reads waiting for the file to hold the records
    // journaled before them, by how many that is; whether a write into the file is wanted once the one under way ends;
    // and whether the journal is closed.
    private Applying? _applying;
    private long _journaled;
    private long _applied;
    private readonly List<(long Through, TaskCompletionSource Settled)> _settling = [];
    private bool _applyWanted;
    private bool _closed;

    // Writer only: whether cutting the journal down failed since it was last emptied (it is not tried again until then).
    private bool _cutDownFailed;

    // Records in the journal that the file does not hold yet, and the grains whose states they hold (with how many of
    // those records hold each); read by the SettleAsync overloads outside the writer.
    private int _pendingCount;
    private readonly ConcurrentDictionary<(string StateName, string GrainId), int> _pendingStates = new();
    private int _applyScheduled;
    private volatile bool _disposed;

    public DuckDbStateWrites(DuckDbDatabase database, TimeSpan applyDelay, ILogger logger)
    {
        _database = database;
        _applyDelay = applyDelay;
        _logger = logger;
        _writes = new(WriteGroup, AfterAnswered);
        _journal = new StateJournal(System.IO.Path.ChangeExtension(database.FilePath, null) + ".state-journal");
        try
        {
            using var connection = database.OpenConnection();

            // What the last run journaled and did not write to the file (it stopped without a chance to) goes there now.
            var left = _journal.ReadAll();
            if (left.Count > 0)
            {
                Apply(connection, left, replay: true);
                _journal.Clear();
                LogReplayed(logger, left.Count, _journal.Path);
            }

            _lastPosition = LastPosition(connection);
            _lastSeq = LastSeqs(connection);
            DuckDbValues.ReadRow(connection, "SELECT deleted_before FROM alert_retention WHERE id = 0", [], reader => _deletedBefore = reader.GetDateTime(0));
        }
        catch
        {
            _journal.Dispose();
            throw;
        }

        _applyTimer = new Timer(static state => ((DuckDbStateWrites)state!).ApplyOnTimer(), this, Timeout.Infinite, Timeout.Infinite);
    }

    /// <summary>For tests: runs as a write into the file beside the writer begins (and may hold it up, or fail it by throwing).</summary>
    internal Action? BeforeApplyingBeside { get; set; }

    /// <summary>For tests: the size of the records the file holds from which the journal is cut down to the others.</summary>
    internal long CutDownJournalFrom { get; set; } = CutDownJournalBytes;

    /// <summary>
    /// Writes (or, without <see cref="StateChange.Data"/>, clears) a grain's state with the alert events it carries.
    /// Returns the exception to throw when the stored ETag is not the one expected; nothing of the change is stored then.
    /// </summary>
    public async Task<InconsistentStateException?> WriteStateAsync(StateChange change, IReadOnlyList<AlertEvent> events)
    {
        var written = await _writes.WriteAsync(new Write(change, events));
        written.Failure?.Throw();
        return written.Refused;
    }

    /// <summary>Stores the events not stored before and returns every one of them with its position.</summary>
    public Task<IReadOnlyList<AlertEvent>> AppendAsync(IReadOnlyList<AlertEvent> events, CancellationToken cancellationToken)
    {
        if (events.Count == 0)
        {
            return Task.FromResult<IReadOnlyList<AlertEvent>>([]);
        }

        return TakeStoredWithState(events) is { } stored ? Task.FromResult<IReadOnlyList<AlertEvent>>(stored) : AppendStoringAsync(events, cancellationToken);
    }

    /// <summary>
    /// Completes once the database file holds every write answered so far: a read of the alert log waits for this first,
    /// so it sees what was written before it (a read of one grain's state waits for the overload below).
    /// </summary>
    public Task SettleAsync(CancellationToken cancellationToken = default) =>
        Volatile.Read(ref _pendingCount) == 0 ? Task.CompletedTask : SettleWritingAsync(cancellationToken);

    /// <summary>
    /// Completes once the database file holds the latest state written for one grain, so that reading it sees that
    /// state. A grain whose state is not in the journal waits for nothing: grains loading while others' writes are in
    /// the journal (devices being provisioned one after another, say) do not each have it written into the file alone.
    /// </summary>
    public Task SettleAsync(string stateName, string grainId, CancellationToken cancellationToken = default) =>
        _pendingStates.ContainsKey((stateName, grainId)) ? SettleWritingAsync(cancellationToken) : Task.CompletedTask;

    /// <summary>
    /// Writes what the journal holds into the file and closes the journal, in the writer after the writes before it
    /// (what cannot be written stays in the journal for the next start); a write after it fails.
    /// </summary>
    public void Dispose()
    {
        _disposed = true;
        using (var stopped = new ManualResetEvent(false))
        {
            if (_applyTimer.Dispose(stopped))
            {
                stopped.WaitOne();
            }
        }

        try
        {
            _writes.WriteAsync(new Write(null, [], Close: true)).GetAwaiter().GetResult().Failure?.Throw();
        }
        catch (Exception exception)
        {
            LogApplyFailed(_logger, exception, _journal.Path);
        }
    }

    /// <summary>
    /// Deletes the alert history older than <paramref name="cutoff"/>: the events that happened before it and the alerts
    /// that are no longer open and whose every change came before it (an open alert stays, however old, and one open
    /// for longer than the history kept stays until its clearing is as old). The latest event stays whatever its
    /// age: positions go on from it when the file is opened again, and a consumer standing at it misses nothing after.
    /// From then on an event from before the cutoff that is handed over again (an outbox a year old) is not stored again,
    /// nor its alert brought back. The alerts to go are found outside the writer (a read that joins them with the events
    /// kept); the deletions run in it, after the journal's records are in the file, so they meet no write of the same
    /// rows, <see cref="DeletionChunk"/> rows at a time, so writes wait for no more than one chunk.
    /// Returns how many events and alerts went.
    /// </summary>
    public async Task<long> DeleteBeforeAsync(DateTimeOffset cutoff, CancellationToken cancellationToken)
    {
        long total = 0;
        while (true)
        {
            await SettleAsync(cancellationToken);
            var alerts = await Task.Run(() => ClosedAlertsBefore(cutoff.UtcDateTime), cancellationToken);
            var written = await _writes.WriteAsync(new Write(null, [], DeleteBefore: cutoff, DeleteAlerts: alerts), cancellationToken);
            written.Failure?.Throw();
            total += written.Deleted;
            if (!written.MoreToDelete)
            {
                return total;
            }
        }
    }

    private async Task SettleWritingAsync(CancellationToken cancellationToken)
    {
        var written = await _writes.WriteAsync(new Write(null, [], Settle: true), cancellationToken);
        written.Failure?.Throw();
        await written.Applied!.WaitAsync(cancellationToken);
    }

    private async Task<IReadOnlyList<AlertEvent>> AppendStoringAsync(IReadOnlyList<AlertEvent> events, CancellationToken cancellationToken)
    {
        var written = await _writes.WriteAsync(new Write(null, events), cancellationToken);
        written.Failure?.Throw();
        return written.Stored;
    }

    /// <summary>The events as stored with a state, when every one of them was; null otherwise.</summary>
    private AlertEvent[]? TakeStoredWithState(IReadOnlyList<AlertEvent> events)
    {
        lock (_storedLock)
        {
            var stored = new AlertEvent[events.Count];
            for (var i = 0; i < events.Count; i++)
            {
                if (!_storedWithState.TryGetValue((events[i].PatientId, events[i].Seq), out var found))
                {
                    return null;
                }

                stored[i] = found;
            }

            foreach (var item in events)
            {
                _storedWithState.Remove((item.PatientId, item.Seq));
            }

            return stored;
        }
    }

    /// <summary>
    /// Journals a group's writes; the reads among them wait for the file to take the journal after the writes are
    /// answered (<see cref="AfterAnswered"/>). A journal that cannot be written fails the group's writes; a file that
    /// cannot be written fails the reads waiting.
    /// </summary>
    private Written[] WriteGroup(IReadOnlyList<Write> group)
    {
        var results = new Written[group.Count];
        if (_closed)
        {
            var closed = ExceptionDispatchInfo.Capture(new ObjectDisposedException(nameof(DuckDbDatabase), "The database is closed."));
            Array.Fill(results, new Written(null, [], closed));
            return results;
        }

        var settle = false;
        var close = false;
        var writes = new List<int>(group.Count);
        for (var i = 0; i < group.Count; i++)
        {
            if (group[i].Ended is { } ended)
            {
                // A write into the file that ended beside the writer; one already taken in by the writer is no news.
                results[i] = new Written(null, []);
                if (ReferenceEquals(ended, _applying))
                {
                    EndApplying(ended);
                }
            }
            else if (group[i].Close)
            {
                close = true;
            }
            else if (group[i].DeleteBefore is not null)
            {
                continue;
            }
            else if (group[i].Settle)
            {
                settle = true;
            }
            else
            {
                writes.Add(i);
            }
        }

        if (writes.Count > 0)
        {
            try
            {
                JournalWrites(group, writes, results);
            }
            catch (Exception exception)
            {
                var failure = ExceptionDispatchInfo.Capture(exception);
                foreach (var i in writes)
                {
                    results[i] = new Written(null, [], failure);
                }
            }
        }

        for (var i = 0; i < group.Count; i++)
        {
            if (group[i].DeleteBefore is { } cutoff)
            {
                try
                {
                    ApplyAllNow();
                    using var connection = _database.OpenConnection();
                    var deletedBefore = cutoff.UtcDateTime > _deletedBefore ? cutoff.UtcDateTime : _deletedBefore;
                    var (deleted, more) = DeleteHistory(connection, cutoff.UtcDateTime, deletedBefore, group[i].DeleteAlerts ?? []);
                    results[i] = new Written(null, [], Deleted: deleted, MoreToDelete: more);
                    _deletedBefore = deletedBefore;
                }
                catch (Exception exception)
                {
                    results[i] = new Written(null, [], ExceptionDispatchInfo.Capture(exception));
                }
            }
        }

        if (close)
        {
            ExceptionDispatchInfo? failure = null;
            try
            {
                ApplyAllNow();
            }
            catch (Exception exception)
            {
                failure = ExceptionDispatchInfo.Capture(exception);
            }

            _journal.Dispose();
            _closed = true;
            FailSettling(failure?.SourceException ?? new ObjectDisposedException(nameof(DuckDbDatabase), "The database is closed."));
            for (var i = 0; i < group.Count; i++)
            {
                if (group[i].Close || group[i].Settle)
                {
                    results[i] = new Written(null, [], failure, Task.CompletedTask);
                }
            }
        }
        else if (settle)
        {
            // Waits for the file to hold every record journaled so far, this group's too; the write into the file starts
            // once the group is answered (AfterAnswered).
            Task applied = Task.CompletedTask;
            if (_applied < _journaled)
            {
                var settled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                _settling.Add((_journaled, settled));
                applied = settled.Task;
            }

            _applyWanted = true;
            for (var i = 0; i < group.Count; i++)
            {
                if (group[i].Settle)
                {
                    results[i] = new Written(null, [], Applied: applied);
                }
            }
        }

        return results;
    }

    /// <summary>
    /// Once a group's writes are answered: when a read waits for the file (or the timer asked, or the journal is to catch
    /// up), starts writing the journal's records into it beside the writer, unless a write into it is under way already
    /// (the next starts as that one ends).
    /// </summary>
    private void AfterAnswered()
    {
        if (_applying is not null || _closed)
        {
            return;
        }

        try
        {
            if (_pending.Count == 0)
            {
                _applyWanted = false;
                if (_journal.IsBroken)
                {
                    // Nothing to write, but no record is journaled until it is emptied.
                    FileHoldsAll();
                }

                return;
            }

            if (_applyWanted || _settling.Count > 0)
            {
                _applyWanted = false;
                StartApplying();
            }
        }
        catch (Exception exception)
        {
            // Never thrown out of the writer's loop; what could not be written stays in the journal and is tried again.
            FailSettling(exception);
            LogApplyFailed(_logger, exception, _journal.Path);
            RetryApplyLater();
        }
    }

    /// <summary>Starts writing every record pending into the file, on a thread of the pool; its end comes back to the writer as a request.</summary>
    private void StartApplying()
    {
        var records = _pending.ToArray();
        var applying = new Applying(records.Length, Task.Run(() => ApplyOutside(records)));
        _applying = applying;
        _ = applying.Done.ContinueWith(
            static (_, state) =>
            {
                var (writes, ended) = ((DuckDbStateWrites, Applying))state!;
                return writes._writes.WriteAsync(new Write(null, [], Ended: ended));
            },
            (this, applying), CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default);
    }

    /// <summary>Writes records into the file on a connection of its own; returns the failure rather than throwing it.</summary>
    private Exception? ApplyOutside(StateJournalRecord[] records)
    {
        try
        {
            BeforeApplyingBeside?.Invoke();
            using var connection = _database.OpenConnection();
            Apply(connection, records, replay: false);
            return null;
        }
        catch (Exception exception)
        {
            return exception;
        }
    }

    /// <summary>
    /// In the writer, once a write into the file beside it has ended: its records leave the pending ones, or its failure
    /// goes to the reads waiting (unless <paramref name="writerAppliesAll"/>: the writer is about to write every record
    /// into the file itself, so the reads wait for that, and the journal is not cut down either).
    /// </summary>
    private void EndApplying(Applying applying, bool writerAppliesAll = false)
    {
        _applying = null;
        if (applying.Done.Result is { } failure)
        {
            LogApplyFailed(_logger, failure, _journal.Path);
            if (!writerAppliesAll)
            {
                // The reads waiting fail (a read that comes later tries again); the timer tries again after a pause,
                // however soon it was due.
                FailSettling(failure);
                _applyWanted = false;
                RetryApplyLater();
            }

            return;
        }

        Applied(applying.Count);
        if (_pending.Count == 0)
        {
            FileHoldsAll();
        }
        else if (!writerAppliesAll && _journal.LengthOf(_journal.Count - _pending.Count) > CutDownJournalFrom && !CutDownJournal())
        {
            // Records came in while the file took the ones before, again and again, and the journal could not be cut
            // down to them: the next write into the file goes at once, so the journal empties before it grows large.
            _applyWanted = true;
        }
        else
        {
            ScheduleApply();
        }

        ReleaseSettled();
    }

    /// <summary>
    /// In the writer: has the file take every record pending now, waiting for a write into it under way first. Throws
    /// when the file cannot take them (they stay pending).
    /// </summary>
    private void ApplyAllNow()
    {
        if (_applying is { } applying)
        {
            // Never faults: the write's failure is its result. When it failed, the records are written here again.
            applying.Done.Wait();
            EndApplying(applying, writerAppliesAll: true);
        }

        if (_pending.Count > 0)
        {
            try
            {
                using var connection = _database.OpenConnection();
                Apply(connection, _pending, replay: false);
            }
            catch (Exception exception)
            {
                // The reads waiting fail, and the timer tries again after a pause.
                FailSettling(exception);
                _applyWanted = false;
                RetryApplyLater();
                throw;
            }

            Applied(_pending.Count);
        }

        _applyWanted = false;
        FileHoldsAll();
        ReleaseSettled();
    }

    /// <summary>The first <paramref name="count"/> pending records are in the file: they leave the pending ones (the reads that waited for them go on at <see cref="ReleaseSettled"/>).</summary>
    private void Applied(int count)
    {
        for (var i = 0; i < count; i++)
        {
            var record = _pending[i];
            foreach (var state in record.States)
            {
                var key = (state.StateName, state.GrainId);
                if (_pendingStates.TryGetValue(key, out var records) && records > 1)
                {
                    _pendingStates[key] = records - 1;
                }
                else
                {
                    _pendingStates.TryRemove(key, out _);
                }
            }

            foreach (var item in record.Events)
            {
                _pendingPositions.Remove((item.Event.PatientId, item.Event.Seq));
            }
        }

        _pending.RemoveRange(0, count);
        Volatile.Write(ref _pendingCount, _pending.Count);
        _applied += count;
    }

    /// <summary>The reads waiting for records the file now holds go on (after the journal is emptied, when it is).</summary>
    private void ReleaseSettled() =>
        _settling.RemoveAll(waiting =>
        {
            if (waiting.Through > _applied)
            {
                return false;
            }

            waiting.Settled.TrySetResult();
            return true;
        });

    /// <summary>The file holds every record journaled: the journal is emptied (and works again, if it was broken), and the ETags known are forgotten when they are many.</summary>
    private void FileHoldsAll()
    {
        if (_pending.Count > 0)
        {
            return;
        }

        if (_etags.Count > MaxKnownETags)
        {
            _etags.Clear();
        }

        if (_journal.Length == 0 && !_journal.IsBroken)
        {
            // Emptied already (by the write into the file that ApplyAllNow waited for).
            _cutDownFailed = false;
            return;
        }

        try
        {
            _journal.Clear();
            _cutDownFailed = false;
        }
        catch (Exception exception)
        {
            LogNotEmptied(_logger, exception, _journal.Path);
        }
    }

    /// <summary>
    /// Records came in while the file took the ones before: the journal drops the records the file holds and keeps the
    /// pending ones (the last it holds), so it stays small however long the stream of writes lasts. Returns false when
    /// that failed, now or earlier since the journal was last emptied.
    /// </summary>
    private bool CutDownJournal()
    {
        if (_cutDownFailed)
        {
            return false;
        }

        try
        {
            _journal.DropOldest(_journal.Count - _pending.Count);
            return true;
        }
        catch (Exception exception)
        {
            // The journal is as it was, or broken (no record is journaled until it is emptied); emptied once the file
            // holds every record either way.
            _cutDownFailed = true;
            LogNotCutDown(_logger, exception, _journal.Path);
            return false;
        }
    }

    private void FailSettling(Exception failure)
    {
        foreach (var (_, settled) in _settling)
        {
            settled.TrySetException(failure);
        }

        _settling.Clear();
    }

    /// <summary>
    /// Checks the writes' state changes against their ETags, gives the events of the accepted ones (and of the appends)
    /// their positions, and journals what was accepted as one record.
    /// </summary>
    private void JournalWrites(IReadOnlyList<Write> group, List<int> writes, Written[] results)
    {
        if (_pending.Count >= MaxPendingRecords || (_pending.Count > 0 && _journal.Length > MaxJournalBytes))
        {
            ApplyAllNow();
        }

        DuckDBConnection? connection = null;
        try
        {
            // Each state change against the ETag stored, or left by an earlier change of the group.
            var etags = new Dictionary<(string StateName, string GrainId), string?>();
            var states = new List<JournaledState>();
            var refused = new InconsistentStateException?[group.Count];
            foreach (var i in writes)
            {
                if (group[i].State is not { } change)
                {
                    continue;
                }

                var key = (change.StateName, change.GrainId.ToString());
                if (!etags.TryGetValue(key, out var stored))
                {
                    stored = StoredETag(key, ref connection);
                }

                if (!string.Equals(stored, change.ExpectedETag, StringComparison.Ordinal))
                {
                    refused[i] = Refusal(change, stored);
                    continue;
                }

                etags[key] = change.NewETag;
                states.Add(new JournaledState(key.StateName, key.Item2, change.NewETag, change.Data));
            }

            // An event handed over again (a grain's outbox after a crash) keeps the position it was stored with. A
            // patient's events are numbered in order, so only one numbered no later than its last stored can have been.
            var next = _lastPosition;
            var positions = new Dictionary<(string PatientId, long Seq), long>();
            var added = new List<JournaledEvent>();
            foreach (var i in writes)
            {
                if (refused[i] is not null)
                {
                    results[i] = new Written(refused[i], []);
                    continue;
                }

                var stored = new List<AlertEvent>(group[i].Events.Count);
                foreach (var item in group[i].Events)
                {
                    var key = (item.PatientId, item.Seq);
                    if (!positions.TryGetValue(key, out var position) && !_pendingPositions.TryGetValue(key, out position))
                    {
                        var storedBefore = _lastSeq.TryGetValue(item.PatientId, out var last) && item.Seq <= last;
                        if (storedBefore && StoredPosition(key, ref connection) is { } found)
                        {
                            position = found;
                        }
                        else if (item.At.UtcDateTime < _deletedBefore)
                        {
                            // Older than the history kept, and not in it: deleted by retention (or it would be).
                            continue;
                        }
                        else
                        {
                            position = ++next;
                            added.Add(new JournaledEvent(position, item with { Position = position }));
                        }

                        positions[key] = position;
                    }

                    stored.Add(item with { Position = position });
                }

                results[i] = new Written(null, stored);
            }

            // Nothing of the group is remembered until its record is on the disk; from there on nothing can fail.
            var journaled = states.Count > 0 || added.Count > 0;
            if (journaled)
            {
                var record = new StateJournalRecord(states, added);
                try
                {
                    _journal.Append(record);
                }
                catch (IOException) when (_journal.IsBroken)
                {
                    // Grain state and alerts cannot be written until the journal is emptied: the next apply tries.
                    LogJournalBroken(_logger, _journal.Path);
                    ScheduleApply();
                    throw;
                }
                _pending.Add(record);
                _journaled++;
                foreach (var state in states)
                {
                    _pendingStates.AddOrUpdate((state.StateName, state.GrainId), 1, static (_, records) => records + 1);
                }
            }

            Volatile.Write(ref _pendingCount, _pending.Count);
            foreach (var item in added)
            {
                _pendingPositions[(item.Event.PatientId, item.Event.Seq)] = item.Position;
            }

            foreach (var (key, etag) in etags)
            {
                _etags[key] = etag;
            }

            _lastPosition = next;
            foreach (var item in added)
            {
                _lastSeq[item.Event.PatientId] = Math.Max(item.Event.Seq, _lastSeq.GetValueOrDefault(item.Event.PatientId));
            }

            RememberStoredWithState(group, writes, results);
            if (journaled)
            {
                ScheduleApply();
            }
        }
        finally
        {
            connection?.Dispose();
        }
    }

    private void RememberStoredWithState(IReadOnlyList<Write> group, List<int> writes, Written[] results)
    {
        lock (_storedLock)
        {
            foreach (var i in writes)
            {
                if (group[i].State is null || results[i].Refused is not null)
                {
                    continue;
                }

                foreach (var item in results[i].Stored)
                {
                    _storedWithState[(item.PatientId, item.Seq)] = item;
                    _storedOrder.Enqueue((item.PatientId, item.Seq));
                    if (_storedOrder.Count > MaxStoredWithState)
                    {
                        _storedWithState.Remove(_storedOrder.Dequeue());
                    }
                }
            }
        }
    }

    /// <summary>A grain's ETag as last written: remembered, or read from the file (which then holds its latest state).</summary>
    private string? StoredETag((string StateName, string GrainId) key, ref DuckDBConnection? connection)
    {
        if (_etags.TryGetValue(key, out var etag))
        {
            return etag;
        }

        connection ??= _database.OpenConnection();
        string? stored = null;
        DuckDbValues.ReadRow(connection, "SELECT etag FROM grain_states WHERE state_key = $1", [StateKey(key.StateName, key.GrainId)],
            reader => stored = reader.GetString(0));
        return stored;
    }

    /// <summary>The position an event was stored at in the file, if it was.</summary>
    private long? StoredPosition((string PatientId, long Seq) key, ref DuckDBConnection? connection)
    {
        connection ??= _database.OpenConnection();
        long? position = null;
        DuckDbValues.ReadRow(connection, "SELECT position FROM alert_events WHERE patient_id = $1 AND seq = $2", [key.PatientId, key.Seq],
            reader => position = reader.GetInt64(0));
        return position;
    }

    private void ScheduleApply()
    {
        if (!_disposed && Interlocked.Exchange(ref _applyScheduled, 1) == 0)
        {
            try
            {
                _applyTimer.Change(_applyDelay, Timeout.InfiniteTimeSpan);
            }
            catch (ObjectDisposedException)
            {
                // Stopping: the Dispose writes what the journal holds.
            }
        }
    }

    /// <summary>Has the timer try the file again after <see cref="RetryDelay"/>, even when it was due sooner.</summary>
    private void RetryApplyLater()
    {
        if (!_disposed)
        {
            Volatile.Write(ref _applyScheduled, 1);
            try
            {
                _applyTimer.Change(RetryDelay, Timeout.InfiniteTimeSpan);
            }
            catch (ObjectDisposedException)
            {
                // Stopping: the Dispose writes what the journal holds.
            }
        }
    }

    private void ApplyOnTimer()
    {
        Interlocked.Exchange(ref _applyScheduled, 0);
        _ = ApplyOnTimerAsync();
    }

    private async Task ApplyOnTimerAsync()
    {
        try
        {
            // Through the writer even with nothing pending: a broken journal is emptied there.
            await SettleWritingAsync(CancellationToken.None);
        }
        catch (Exception) when (!_disposed)
        {
            // Logged where the write into the file failed, which has the timer try again.
        }
        catch (Exception)
        {
            // Stopping: the Dispose writes what the journal holds, or reports why it could not.
        }
    }

    /// <summary>
    /// Writes records into the file in one transaction. A newly raised alert is inserted: its id is new, as the grain
    /// numbers its alerts in the state it writes. Should a row of that id exist all the same (grain state restored from
    /// an older copy of the file), the records are written again with the row replaced. Replaying records a crash left
    /// in the journal (<paramref name="replay"/>), the events the file already holds (its transaction committed, the
    /// journal not yet emptied) are skipped; the states are written again, the last of each grain last.
    /// </summary>
    private static void Apply(DuckDBConnection connection, IReadOnlyList<StateJournalRecord> records, bool replay)
    {
        try
        {
            ApplyTransaction(connection, records, replay, replaceRaised: false);
        }
        catch (DuckDBException exception) when (exception.ErrorType == DuckDBErrorType.Constraint)
        {
            ApplyTransaction(connection, records, replay, replaceRaised: true);
        }
    }

    private static void ApplyTransaction(DuckDBConnection connection, IReadOnlyList<StateJournalRecord> records, bool replay, bool replaceRaised)
    {
        using var transaction = connection.BeginTransaction();
        var states = new Dictionary<(string StateName, string GrainId), JournaledState>();
        var events = new List<AlertEvent>();
        var storedThrough = replay ? LastPosition(connection) : 0;
        foreach (var record in records)
        {
            foreach (var state in record.States)
            {
                states[(state.StateName, state.GrainId)] = state;
            }

            foreach (var item in record.Events)
            {
                if (item.Position > storedThrough)
                {
                    events.Add(item.Event with { Position = item.Position });
                }
            }
        }

        WriteStates(connection, states);
        WriteEvents(connection, events, replaceRaised);
        transaction.Commit();
    }

    /// <summary>Writes each grain's latest state: an UPDATE of rows that exist, an INSERT of those that do not, a DELETE of those cleared.</summary>
    private static void WriteStates(DuckDBConnection connection, Dictionary<(string StateName, string GrainId), JournaledState> states)
    {
        if (states.Count == 0)
        {
            return;
        }

        // One grain's update alone (an alert change at a time) goes by its key, a statement DuckDB runs in a fraction
        // of a join's time; a row found missing is inserted.
        if (states.Count == 1 && states.Values.Single() is { Data: not null } single)
        {
            var key = StateKey(single.StateName, single.GrainId);
            if (DuckDbValues.ExecuteRow(connection, "UPDATE grain_states SET etag = $1, data = $2 WHERE state_key = $3", single.ETag, single.Data, key) == 0)
            {
                DuckDbValues.ExecuteRow(connection, "INSERT INTO grain_states VALUES ($1, $2, $3)", key, single.ETag, single.Data);
            }

            return;
        }

        var written = states.Values.Select(state => (Key: StateKey(state.StateName, state.GrainId), State: state)).ToList();
        var existed = new HashSet<string>(StringComparer.Ordinal);
        DuckDbValues.Read(connection, "SELECT s.state_key FROM grain_states s JOIN (VALUES {values}) k(state_key) USING (state_key)",
            written, row => [row.Key], reader => existed.Add(reader.GetString(0)));

        // An UPDATE of rows that exist and an INSERT of those that do not: DuckDB's INSERT OR REPLACE costs several times either.
        var updates = written.Where(row => row.State.Data is not null && existed.Contains(row.Key)).ToList();
        var inserts = written.Where(row => row.State.Data is not null && !existed.Contains(row.Key)).ToList();
        var clears = written.Where(row => row.State.Data is null && existed.Contains(row.Key)).Select(row => row.Key).ToList();
        DuckDbValues.Execute(connection,
            "UPDATE grain_states SET etag = v.etag, data = v.data FROM (VALUES {values}) v(state_key, etag, data) WHERE grain_states.state_key = v.state_key",
            updates, row => [row.Key, row.State.ETag, row.State.Data]);
        DuckDbValues.Execute(connection, "INSERT INTO grain_states VALUES {values}", inserts, row => [row.Key, row.State.ETag, row.State.Data]);
        DuckDbValues.Execute(connection, "DELETE FROM grain_states WHERE state_key IN (SELECT * FROM (VALUES {values}))", clears, key => [key]);
    }

    /// <summary>
    /// The row key of a grain's state: its name, then the grain's id (which holds a slash itself, after its type). One
    /// column, because DuckDB finds a row through an index only by a single column: by the two columns of a compound key
    /// it scans the whole table, a cost that grows with every patient and device the file knows.
    /// </summary>
    internal static string StateKey(string stateName, string grainId)
    {
        CheckStateName(stateName);
        return string.Concat(stateName, "/", grainId);
    }

    /// <summary>Refuses a state name that would make two states' keys alike (see <see cref="StateKey"/>).</summary>
    internal static void CheckStateName(string stateName)
    {
        if (stateName.Contains('/', StringComparison.Ordinal))
        {
            throw new ArgumentException($"A grain state's name may not hold a slash ('{stateName}'): it ends the name in the state's key.", nameof(stateName));
        }
    }

    /// <summary>
    /// Moves grain state from the first layout, keyed by two columns (state name, grain id), to one key column, in one
    /// transaction; a file already moved, or new, is left alone.
    /// </summary>
    internal static void MoveToStateKeys(DuckDBConnection connection)
    {
        if (!DuckDbDatabase.HasColumn(connection, "grain_state", "grain_type"))
        {
            return;
        }

        using var transaction = connection.BeginTransaction();
        using (var move = connection.CreateCommand())
        {
            move.CommandText = """
                INSERT INTO grain_states SELECT grain_type || '/' || grain_id, etag, data FROM grain_state;
                DROP TABLE grain_state;
                """;
            move.ExecuteNonQuery();
        }

        transaction.Commit();
    }

    /// <summary>Stores events at their positions, and each alert as the latest of them leaves it.</summary>
    private static void WriteEvents(DuckDBConnection connection, List<AlertEvent> added, bool replaceRaised)
    {
        if (added.Count == 0)
        {
            return;
        }

        DuckDbValues.Execute(connection, "INSERT INTO alert_events VALUES {values}", added, item =>
            [item.Position, item.PatientId, item.Seq, item.Alert.AlertId, (byte)item.Type, item.At.UtcDateTime, JsonSerializer.Serialize(item, TelemetryJson.Options)]);

        // Each alert as the latest event of it leaves it: put in place with the event that raised it, updated after. A
        // plain INSERT and an UPDATE each cost DuckDB a fraction of an INSERT OR REPLACE, which stays for a row found
        // missing or already there.
        var latest = added.GroupBy(item => item.Alert.AlertId, StringComparer.Ordinal)
            .Select(events => (Raised: events.Any(item => item.Type == AlertEventType.Raised), events.Last().Alert))
            .ToList();
        var raised = latest.Where(alert => alert.Raised).Select(alert => alert.Alert).ToList();
        var changed = latest.Where(alert => !alert.Raised).Select(alert => alert.Alert).ToList();
        DuckDbValues.Execute(connection, replaceRaised ? "INSERT OR REPLACE INTO alerts VALUES {values}" : "INSERT INTO alerts VALUES {values}", raised, AlertRow);
        var updated = changed is [var only]
            ? DuckDbValues.ExecuteRow(connection, "UPDATE alerts SET is_open = $1, alert = $2 WHERE alert_id = $3",
                only.IsOpen, JsonSerializer.Serialize(only, TelemetryJson.Options), only.AlertId)
            : DuckDbValues.Execute(connection,
                "UPDATE alerts SET is_open = v.is_open, alert = v.alert FROM (VALUES {values}) v(alert_id, patient_id, raised_at, is_open, alert) "
                + "WHERE alerts.alert_id = v.alert_id",
                changed, AlertRow);
        if (updated < changed.Count)
        {
            DuckDbValues.Execute(connection, "INSERT OR REPLACE INTO alerts VALUES {values}", changed, AlertRow);
        }
    }

    private static InconsistentStateException Refusal(StateChange change, string? stored) =>
        new($"State '{change.StateName}' of {change.GrainId} was changed by someone else.", stored, change.ExpectedETag);

    private static object?[] AlertRow(Alert alert) =>
        [alert.AlertId, alert.PatientId, alert.RaisedAt.UtcDateTime, alert.IsOpen, JsonSerializer.Serialize(alert, TelemetryJson.Options)];

    /// <summary>
    /// Up to <see cref="DeletionChunk"/> events and as many alerts of the history before <paramref name="cutoff"/>, in one
    /// transaction with the mark of what was deleted (see <see cref="DeleteBeforeAsync"/>); returns how many went, and
    /// whether a chunk was full (there may be more).
    /// </summary>
    private static (long Deleted, bool More) DeleteHistory(DuckDBConnection connection, DateTime cutoff, DateTime deletedBefore, IReadOnlyList<string> alertIds)
    {
        using var transaction = connection.BeginTransaction();
        using var command = connection.CreateCommand();
        command.Parameters.Add(new DuckDBParameter(cutoff));
        command.Parameters.Add(new DuckDBParameter(DeletionChunk));
        command.CommandText = """
            DELETE FROM alert_events WHERE position IN (
                SELECT position FROM alert_events
                WHERE occurred_at < $1 AND position < (SELECT MAX(position) FROM alert_events)
                ORDER BY position LIMIT $2)
            """;
        long events = command.ExecuteNonQuery();
        long alerts = DuckDbValues.Execute(connection, "DELETE FROM alerts WHERE NOT is_open AND alert_id IN (SELECT * FROM (VALUES {values}))", alertIds, id => [id]);
        DuckDbValues.ExecuteRow(connection, "INSERT OR REPLACE INTO alert_retention VALUES (0, $1)", deletedBefore);
        transaction.Commit();
        return (events + alerts, events == DeletionChunk || alertIds.Count == DeletionChunk);
    }

    /// <summary>
    /// Up to <see cref="DeletionChunk"/> alerts no longer open that were raised before <paramref name="cutoff"/> and have
    /// no event since (their clearing too is older): read on a connection of its own, outside the writer.
    /// </summary>
    private List<string> ClosedAlertsBefore(DateTime cutoff)
    {
        using var connection = _database.OpenConnection();
        var ids = new List<string>();
        DuckDbValues.ReadRow(
            connection,
            """
            SELECT a.alert_id FROM alerts a
            WHERE a.raised_at < $1 AND NOT a.is_open
                AND NOT EXISTS (SELECT 1 FROM alert_events e WHERE e.alert_id = a.alert_id AND e.occurred_at >= $1)
            LIMIT $2
            """,
            [cutoff, DeletionChunk],
            reader => ids.Add(reader.GetString(0)));
        return ids;
    }

    /// <summary>Each patient's last stored event number.</summary>
    private static Dictionary<string, long> LastSeqs(DuckDBConnection connection)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT patient_id, MAX(seq) FROM alert_events GROUP BY patient_id";
        using var reader = command.ExecuteReader();
        var seqs = new Dictionary<string, long>(StringComparer.Ordinal);
        while (reader.Read())
        {
            seqs[reader.GetString(0)] = reader.GetInt64(1);
        }

        return seqs;
    }

    /// <summary>The position of the latest stored event; zero when there is none.</summary>
    internal static long LastPosition(DuckDBConnection connection)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT COALESCE(MAX(position), 0) FROM alert_events";
        return Convert.ToInt64(command.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture);
    }

    [LoggerMessage(EventId = 3101, Level = LogLevel.Warning, Message = "Wrote {Records} records that the last run left in {Journal} into the database (the first of them may have been in it already)")]
    private static partial void LogReplayed(ILogger logger, int records, string journal);

    [LoggerMessage(EventId = 3103, Level = LogLevel.Warning, Message = "Emptying {Journal} failed; the database holds its records, and it is emptied again once the database next holds every record")]
    private static partial void LogNotEmptied(ILogger logger, Exception exception, string journal);

    [LoggerMessage(EventId = 3105, Level = LogLevel.Warning, Message = "Cutting {Journal} down to the records the database does not hold yet failed; the database takes them at once instead, until it holds every record and the journal is emptied")]
    private static partial void LogNotCutDown(ILogger logger, Exception exception, string journal);

    [LoggerMessage(EventId = 3104, Level = LogLevel.Critical, Message = "{Journal} could not cut off a record that failed, or be cut down for sure: grain state and alerts are not written until it is emptied, which the next write of its records into the database tries")]
    private static partial void LogJournalBroken(ILogger logger, string journal);

    [LoggerMessage(EventId = 3102, Level = LogLevel.Error, Message = "Writing the records of {Journal} into the database failed; they stay in the journal and are tried again")]
    private static partial void LogApplyFailed(ILogger logger, Exception exception, string journal);

    /// <summary>A write (with <paramref name="Data"/>) or a clear (without) of one grain's state.</summary>
    internal sealed record StateChange(string StateName, GrainId GrainId, string? ExpectedETag, byte[]? Data, string? NewETag);

    /// <summary>
    /// A state change with the events it carries (stored with it when it is accepted), an append alone, a read waiting
    /// for the file (<paramref name="Settle"/>), a deletion of the history before a time (<paramref name="DeleteBefore"/>,
    /// with the alerts found to go, <paramref name="DeleteAlerts"/>), the last request (<paramref name="Close"/>), or the
    /// end of a write into the file beside the writer (<paramref name="Ended"/>).
    /// </summary>
    private readonly record struct Write(
        StateChange? State,
        IReadOnlyList<AlertEvent> Events,
        bool Settle = false,
        bool Close = false,
        DateTimeOffset? DeleteBefore = null,
        IReadOnlyList<string>? DeleteAlerts = null,
        Applying? Ended = null);

    /// <summary>A write into the file of the first <paramref name="Count"/> pending records, under way beside the writer; <paramref name="Done"/> never faults, its result the failure, if any.</summary>
    private sealed record Applying(int Count, Task<Exception?> Done);

    /// <summary>
    /// A write's answer: the refusal of its state change, or its events as stored (with their positions), or how many
    /// rows a deletion took (and whether it left more); or, when it failed, the exception. A read waiting for the file waits for
    /// <paramref name="Applied"/> as well.
    /// </summary>
    private readonly record struct Written(
        InconsistentStateException? Refused, IReadOnlyList<AlertEvent> Stored, ExceptionDispatchInfo? Failure = null, Task? Applied = null, long Deleted = 0, bool MoreToDelete = false);
}
