using System.Text;
using Microsoft.Extensions.Logging;
using Telemetry.Core.Readings;
using Telemetry.Core.Rollups;
using Telemetry.Core.Storage;
using Telemetry.Core.Vitals;
using Telemetry.Storage.DuckDb;

namespace Telemetry.Storage.Influx;

/// <summary>
/// The raw series in a time-series server that speaks InfluxDB's v2 write API: InfluxDB 2, or VictoriaMetrics. A commit
/// writes the flush as line protocol (layout in <see cref="InfluxLayout"/>), gzip-compressed, in requests of at most
/// <see cref="MaxLinesPerWrite"/> lines, and returns only once the server has answered 204 for all of them (see
/// <see cref="SeriesWriter"/> for retries); when it fails, nothing is acknowledged.
/// </summary>
/// <remarks>
/// A reading's identity in the server is its series and time, so a reading written twice is stored once. As in the
/// embedded store, a resent batch is recognised by its number (kept in the local DuckDB file) and a reading sent again
/// by its device, vital and time (see <see cref="FindRepeatedAsync"/>), so neither is handed to the patient's grain
/// again. One gap remains in a cluster: a server that has seen a device before knows the device's latest reading only
/// from what it committed itself, so a resend of a batch another server committed, with readings after that, is
/// stored once but may be counted twice in the live windows until the grain next rebuilds.
/// </remarks>
public sealed partial class InfluxRawSeriesStore : IRawSeriesStore, IDisposable
{
    /// <summary>The most lines in one write request.</summary>
    public const int MaxLinesPerWrite = 10_000;

    private readonly SeriesBackend _backend;
    private readonly SequenceLedger _sequences;
    private readonly DuckDB.NET.Data.DuckDBConnection _ledgerConnection;
    private readonly ReadingsFiles _ledgerFiles;
    private readonly TimeProvider _timeProvider;
    private readonly ILogger<InfluxRawSeriesStore> _logger;
    private readonly List<string> _chunks = [];
    private readonly Dictionary<(string DeviceId, VitalKind Kind), long> _latest = [];
    private readonly Dictionary<(string DeviceId, VitalKind Kind), long> _flushLatest = [];
    private readonly Dictionary<(string DeviceId, VitalKind Kind, long TimestampMs), double> _inFlush = [];
    private readonly HashSet<(int Batch, int Reading)> _repeated = [];
    private readonly HashSet<(int Batch, int Reading)> _conflicting = [];
    private readonly RecentReadings _recent;

    // The same for quarantined readings: one sent again is neither kept again nor handed to the grain twice.
    private readonly Dictionary<(string DeviceId, VitalKind Kind), long> _latestQuarantined = [];
    private readonly Dictionary<(string DeviceId, VitalKind Kind), long> _flushLatestQuarantined = [];
    private readonly HashSet<(int Batch, int Reading)> _quarantineRepeated = [];
    private readonly HashSet<(int Batch, int Reading)> _quarantineJudgedOnly = [];
    private readonly RecentReadings _recentQuarantined;
    private readonly UnjudgedQuarantine _unjudged = new();

    // The minutes, per patient and vital, this commit stores readings in: recorded with its batch numbers, so that a
    // grain call lost or failed after the commit can be repaired (see DuckDbCommitLog.ForLedger).
    private readonly HashSet<(string PatientId, VitalKind Kind, long MinuteStartMs)> _minutes = [];
    private readonly StringBuilder _lines = new();
    // A lookup of readings sent before is cut where they lie this far apart, into this many lookups at most.
    private static readonly long MaxLookupGapMs = (long)TimeSpan.FromHours(1).TotalMilliseconds;
    private const int MaxLookups = 16;

    private long _lastCommitId;

    // Whether the commit under way has had the server show its answered writes (one request serves all its lookups).
    private bool _shownForLookups;

    // When this store opened (ms): the server it writes to may hold writes the store before it made up to then, not
    // searchable yet, and what those were is not remembered across the restart.
    private readonly long _openedMs;

    // The batch numbers this store's writes stored, with when the server answered each write (ms), for ReadableAfter: a
    // number it knows whose readings the server does not show was sent before only while that write may not show yet
    // (see SentBeforeUnseen). Dropped in the order written, once ReadableAfter has passed.
    private readonly Dictionary<(string DeviceId, ulong Sequence), long> _numbersWrittenMs = [];
    private readonly Queue<(string DeviceId, ulong Sequence, long AtMs)> _numbersWrittenOrder = new();

    /// <summary>The last three digits of this server's commit ids: drawn at start, so two servers share them one time in a thousand.</summary>
    internal long CommitNode { get; } = Random.Shared.Next(1_000);

    // Whether a refused flush before a read was logged (once: every rebuild would repeat it).
    private int _flushRefusedLogged;

    public InfluxRawSeriesStore(SeriesBackend backend, DuckDbDatabase database, TimeProvider timeProvider, ILogger<InfluxRawSeriesStore> logger)
    {
        _backend = backend;
        _timeProvider = timeProvider;
        _openedMs = timeProvider.GetUtcNow().ToUnixTimeMilliseconds();
        _logger = logger;
        _ledgerFiles = database.Readings;
        _ledgerConnection = database.OpenConnection();
        _sequences = new SequenceLedger(_ledgerConnection, _ledgerFiles.Active, lastCommitId: 0, readingsCarrySequences: false, logger);
        _recent = new RecentReadings(backend.ReadableAfter);
        _recentQuarantined = new RecentReadings(backend.ReadableAfter);
    }

    private ISeriesReader Reader => _backend.Reader;

    /// <summary>A commit is several requests, and the server makes writes searchable a while after answering (see <see cref="SeriesServerOptions.ReadableAfter"/>).</summary>
    public TimeSpan ReadableAfter => _backend.ReadableAfter;

    /// <summary>Where the series are written, for health reports.</summary>
    public string Describe() => _backend.Description;

    /// <summary>Why the server refused the last write that failed, if it refused it (see <see cref="SeriesWriter.Refusal"/>).</summary>
    public (string Reason, DateTimeOffset At)? Refusal => _backend.Writer.Refusal;

    /// <summary>True when the series server answers its ping within <paramref name="within"/>.</summary>
    public Task<bool> AnswersAsync(TimeSpan within, CancellationToken cancellationToken) => _backend.AnswersAsync(within, cancellationToken);

    public async ValueTask<long> CommitAsync(IReadOnlyList<DeviceBatch> batches, Memory<BatchOutcome> outcomes, CancellationToken cancellationToken = default)
    {
        // Commit ids are microseconds of the clock, so they keep increasing across restarts and across the nodes of a
        // cluster (as far as their clocks agree), as the grains' rebuild expects; each server's end in its own three
        // digits (CommitNode), so that two servers committing in the same millisecond do not give one id (a grain that
        // applied one server's commit would take the other's, whose call failed, as applied too, and not repair it).
        var earliest = Math.Max(_lastCommitId + 1, _timeProvider.GetUtcNow().ToUnixTimeMilliseconds() * 1_000);
        var commitId = earliest - (earliest % 1_000) + CommitNode;
        if (commitId < earliest)
        {
            commitId += 1_000;
        }

        _shownForLookups = false;
        await FindRepeatedAsync(batches, cancellationToken);
        await FindRepeatedQuarantineAsync(batches, cancellationToken);
        Stage(batches, outcomes.Span, commitId);

        // The minutes go to the local file before the lines go to the server: a write cut short (a failure, or a crash
        // in the middle of it) may have stored some lines, which a resend then finds stored and hands to no grain, so the
        // repair after it (or on the next start) must find their minutes.
        var minutesRecorded = RecordMinutes(commitId);
        try
        {
            if (_chunks.Count > 0)
            {
                await _backend.Writer.WriteAsync(_chunks, cancellationToken);
            }
        }
        catch
        {
            // Its id is not used again, so the repair after a failed commit finds its minutes.
            _sequences.RolledBack();
            _unjudged.Failed(batches, outcomes.Span);
            _lastCommitId = commitId;
            if (!minutesRecorded)
            {
                RecordMinutes(commitId);
            }

            throw;
        }

        // InfluxDB holds every line: the commit is durable and nothing from here on may fail it.
        _lastCommitId = commitId;
        NoteNumbersWritten(batches, outcomes.Span);
        foreach (var (key, timestampMs) in _flushLatest)
        {
            _latest[key] = timestampMs;
        }

        foreach (var (key, timestampMs) in _flushLatestQuarantined)
        {
            _latestQuarantined[key] = timestampMs;
        }

        RememberUnnumbered(batches, outcomes.Span);
        _unjudged.Committed(batches, outcomes.Span);

        RecordSequences(minutesRecorded);
        return commitId;
    }

    /// <summary>
    /// Finds the readings the device sent before (same vital and time), so they are neither written again (which could
    /// replace the stored value) nor handed to the grain twice: with the value stored (or first sent in the flush),
    /// repeats; with another, conflicts (the first value stands). A reading after the latest this server committed for
    /// the device and vital is new without a lookup, which is every reading of a device sending in order. The rest (a
    /// resend, out-of-order data, a device this server has not seen since it started) are looked up, with one query per
    /// device and flush, and checked against the flush itself.
    /// </summary>
    private async Task FindRepeatedAsync(IReadOnlyList<DeviceBatch> batches, CancellationToken cancellationToken)
    {
        _repeated.Clear();
        _conflicting.Clear();
        _flushLatest.Clear();
        _inFlush.Clear();
        var candidates = new Dictionary<string, List<(int Batch, int Reading)>>(StringComparer.Ordinal);
        for (var i = 0; i < batches.Count; i++)
        {
            // A batch whose number was committed before is looked up too, for readings sent again with another value (a
            // conflict); the rest of it is taken for what its number sent before.
            var batch = batches[i];
            var readings = batch.Readings.Span;
            for (var j = 0; j < readings.Length; j++)
            {
                var key = (batch.DeviceId, readings[j].Kind);
                var known = _flushLatest.TryGetValue(key, out var latest) || _latest.TryGetValue(key, out latest);
                if (known && readings[j].TimestampMs > latest)
                {
                    _flushLatest[key] = readings[j].TimestampMs;
                    continue;
                }

                if (!candidates.TryGetValue(batch.DeviceId, out var list))
                {
                    candidates[batch.DeviceId] = list = [];
                }

                list.Add((i, j));
            }
        }

        if (candidates.Count > 0)
        {
            await ShowRecentWritesAsync(cancellationToken);
        }

        foreach (var (deviceId, list) in candidates)
        {
            NoteNewReadingsOf(deviceId, batches, list);
            var kinds = list.Select(at => batches[at.Batch].Readings.Span[at.Reading].Kind).ToHashSet();
            var stored = await ExistingAsync(InfluxLayout.Vitals, deviceId, kinds, list.Select(at => batches[at.Batch].Readings.Span[at.Reading].TimestampMs), cancellationToken);
            foreach (var (i, j) in list)
            {
                var reading = batches[i].Readings.Span[j];
                var sent = (deviceId, reading.Kind, reading.TimestampMs);
                if (stored.TryGetValue((reading.Kind, reading.TimestampMs), out var before)
                    || _recent.TryGetValue(deviceId, reading.Kind, reading.TimestampMs, out before)
                    || _inFlush.TryGetValue(sent, out before))
                {
                    (BatchOutcome.SameValue(reading.Kind, before, reading.Value) ? _repeated : _conflicting).Add((i, j));
                    continue;
                }

                _inFlush[sent] = reading.Value;
                if (batches[i].Sequence != 0 && SentBeforeUnseen(deviceId, batches[i].Sequence))
                {
                    // Not found, but its batch's number was committed lately: taken for sent before (the server may not
                    // show every write yet, InfluxDB above all, which cannot be asked to), not written or counted again.
                    _repeated.Add((i, j));
                    continue;
                }

                var key = (deviceId, reading.Kind);
                var latest = _flushLatest.TryGetValue(key, out var inFlush) ? inFlush : _latest.GetValueOrDefault(key, long.MinValue);
                _flushLatest[key] = Math.Max(latest, reading.TimestampMs);
            }
        }
    }

    /// <summary>
    /// Finds the quarantined readings kept before (same device, vital and time) or twice in this flush, as
    /// <see cref="FindRepeatedAsync"/> does for readings: one after the latest this server kept for the device and vital
    /// is new without a lookup; the rest are looked up, once per device and flush. Only batches bringing quarantined
    /// readings (a sensor reporting the implausible) pay for it.
    /// </summary>
    private async Task FindRepeatedQuarantineAsync(IReadOnlyList<DeviceBatch> batches, CancellationToken cancellationToken)
    {
        _quarantineRepeated.Clear();
        _quarantineJudgedOnly.Clear();
        _flushLatestQuarantined.Clear();
        HashSet<(string DeviceId, VitalKind Kind, long TimestampMs)>? inFlush = null;
        Dictionary<string, List<(int Batch, int Reading)>>? candidates = null;
        for (var i = 0; i < batches.Count; i++)
        {
            var batch = batches[i];
            if (batch.Quarantined.IsEmpty)
            {
                continue;
            }

            var quarantined = batch.Quarantined.Span;
            for (var j = 0; j < quarantined.Length; j++)
            {
                var reading = quarantined[j];
                inFlush ??= [];
                if (!inFlush.Add((batch.DeviceId, reading.Kind, reading.TimestampMs)))
                {
                    _quarantineRepeated.Add((i, j));
                    continue;
                }

                var key = (batch.DeviceId, reading.Kind);
                if (!(_latestQuarantined.TryGetValue(key, out var latest) && reading.TimestampMs > latest))
                {
                    candidates ??= [];
                    if (!candidates.TryGetValue(batch.DeviceId, out var list))
                    {
                        candidates[batch.DeviceId] = list = [];
                    }

                    list.Add((i, j));
                    continue;
                }

                NoteQuarantined(key, reading.TimestampMs);
            }
        }

        if (candidates is null)
        {
            return;
        }

        await ShowRecentWritesAsync(cancellationToken);
        foreach (var (deviceId, list) in candidates)
        {
            var kinds = list.Select(at => batches[at.Batch].Quarantined.Span[at.Reading].Kind).ToHashSet();
            var stored = await ExistingAsync(
                InfluxLayout.Quarantine, deviceId, kinds, list.Select(at => batches[at.Batch].Quarantined.Span[at.Reading].TimestampMs), cancellationToken);
            foreach (var (i, j) in list)
            {
                var reading = batches[i].Quarantined.Span[j];
                // Not found, but its batch's number was committed: kept before by that number, as for readings.
                if (stored.ContainsKey((reading.Kind, reading.TimestampMs)) || _recentQuarantined.Contains(deviceId, reading.Kind, reading.TimestampMs)
                    || (batches[i].Sequence != 0 && SentBeforeUnseen(deviceId, batches[i].Sequence)))
                {
                    // Kept before; by a commit that failed all the same, it is judged now (and not written again).
                    (_unjudged.Contains(deviceId, reading.Kind, reading.TimestampMs) ? _quarantineJudgedOnly : _quarantineRepeated).Add((i, j));
                    continue;
                }

                NoteQuarantined((deviceId, reading.Kind), reading.TimestampMs);
            }
        }
    }

    /// <summary>Raises the latest quarantined time kept for the device and vital, as of this flush (never lowers it: an older one kept late does not).</summary>
    private void NoteQuarantined((string DeviceId, VitalKind Kind) key, long timestampMs)
    {
        var latest = _flushLatestQuarantined.TryGetValue(key, out var inFlush) ? inFlush : _latestQuarantined.GetValueOrDefault(key, long.MinValue);
        _flushLatestQuarantined[key] = Math.Max(latest, timestampMs);
    }

    /// <summary>
    /// Remembers the readings of batches without a number that this commit stored, for as long as the server may not
    /// show them yet: a resend of them (its ack lost) is then known for one, not handed to the grain twice.
    /// </summary>
    private void RememberUnnumbered(IReadOnlyList<DeviceBatch> batches, ReadOnlySpan<BatchOutcome> outcomes)
    {
        var nowMs = _timeProvider.GetUtcNow().ToUnixTimeMilliseconds();
        _recent.Sweep(nowMs);
        _recentQuarantined.Sweep(nowMs);
        for (var i = 0; i < batches.Count; i++)
        {
            if (batches[i].Sequence == 0 && outcomes[i].Outcome == CommitOutcome.Stored)
            {
                foreach (var reading in outcomes[i].Stored.Span)
                {
                    _recent.Add(batches[i].DeviceId, reading.Kind, reading.TimestampMs, reading.Value, nowMs);
                }

                foreach (var reading in outcomes[i].Quarantined.Span)
                {
                    _recentQuarantined.Add(batches[i].DeviceId, reading.Kind, reading.TimestampMs, reading.Value, nowMs);
                }
            }
        }
    }

    /// <summary>
    /// The (vital, time) pairs, with their values, the server holds of the device's series of <paramref name="kinds"/> at <paramref name="times"/>
    /// (a lookup of a few daily weights does not read the heart rate sent every second between them), asked span by span:
    /// the times are cut where they lie an hour or more apart (at the widest such gaps, <see cref="MaxLookups"/> spans at
    /// most). A device whose readings to look up lie far apart (one from a month ago, one from a minute ago) costs two
    /// small exports, not one of everything it sent in between, which would hold up every commit behind it.
    /// </summary>
    private async Task<Dictionary<(VitalKind Kind, long TimestampMs), double>> ExistingAsync(
        string measurement, string deviceId, IReadOnlyCollection<VitalKind> kinds, IEnumerable<long> times, CancellationToken cancellationToken)
    {
        var sorted = times.Order().ToArray();
        if (sorted.Length == 0)
        {
            return [];
        }

        Dictionary<(VitalKind Kind, long TimestampMs), double>? existing = null;
        foreach (var (firstMs, lastMs) in TimeStretches.Of(sorted, MaxLookupGapMs, MaxLookups))
        {
            var stored = await Reader.ExistingAsync(measurement, deviceId, kinds, firstMs, lastMs + 1, cancellationToken);
            if (existing is null)
            {
                existing = stored;
            }
            else
            {
                foreach (var (at, value) in stored)
                {
                    existing[at] = value;
                }
            }
        }

        return existing ?? [];
    }

    /// <summary>
    /// Puts the device's readings of this flush that were new without a lookup into <c>_inFlush</c>, so that a candidate
    /// repeating one of them is caught. Only devices with candidates pay for it, which is rare (resends, out of order).
    /// </summary>
    private void NoteNewReadingsOf(string deviceId, IReadOnlyList<DeviceBatch> batches, List<(int Batch, int Reading)> candidates)
    {
        var looked = candidates.ToHashSet();
        for (var i = 0; i < batches.Count; i++)
        {
            var batch = batches[i];
            if (batch.DeviceId != deviceId)
            {
                continue;
            }

            var readings = batch.Readings.Span;
            for (var j = 0; j < readings.Length; j++)
            {
                if (!looked.Contains((i, j)))
                {
                    _inFlush.TryAdd((deviceId, readings[j].Kind, readings[j].TimestampMs), readings[j].Value);
                }
            }
        }
    }

    /// <summary>Decides each batch's outcome and writes the lines of what is new into <see cref="_chunks"/>.</summary>
    private void Stage(IReadOnlyList<DeviceBatch> batches, Span<BatchOutcome> outcomes, long commitId)
    {
        _chunks.Clear();
        _lines.Clear();
        _minutes.Clear();
        var lines = 0;
        for (var i = 0; i < batches.Count; i++)
        {
            var batch = batches[i];
            var readings = batch.Readings.Span;
            var known = batch.Sequence != 0 && _sequences.IsCommitted(batch.DeviceId, batch.Sequence);
            if (known && AllRepeated(i, readings.Length))
            {
                outcomes[i] = BatchOutcome.DuplicateBatch(batch.Readings.Length);
                continue;
            }

            if (batch.Sequence != 0 && !known)
            {
                _sequences.Stage(batch.DeviceId, batch.Sequence);
            }

            var stored = _repeated.Count == 0 && _conflicting.Count == 0 ? null : new List<VitalReading>(readings.Length);
            var conflicts = 0;
            var (lastKind, lastMinute) = ((VitalKind)0, long.MinValue);
            for (var j = 0; j < readings.Length; j++)
            {
                if (stored is not null)
                {
                    if (_repeated.Contains((i, j)))
                    {
                        continue;
                    }

                    if (_conflicting.Contains((i, j)))
                    {
                        conflicts++;
                        continue;
                    }

                    stored.Add(readings[j]);
                }

                // A batch's readings mostly share their minute: one lookup per minute and vital, not per reading.
                var minute = Resolution.Minute.WindowStart(readings[j].TimestampMs);
                if (minute != lastMinute || readings[j].Kind != lastKind)
                {
                    (lastKind, lastMinute) = (readings[j].Kind, minute);
                    _minutes.Add((batch.PatientId, lastKind, minute));
                }

                InfluxLayout.AppendLine(_lines, InfluxLayout.Vitals, batch.DeviceId, batch.PatientId, readings[j], commitId);
                lines = EndChunkIfFull(lines + 1);
            }

            var quarantined = batch.Quarantined.Span;
            List<VitalReading>? kept = null;
            for (var j = 0; j < quarantined.Length; j++)
            {
                if (_quarantineRepeated.Contains((i, j)))
                {
                    // Kept before: the ones of the batch kept here are copied out (rarely: a batch sent again).
                    kept ??= [.. quarantined[..j]];
                    continue;
                }

                kept?.Add(quarantined[j]);
                if (_quarantineJudgedOnly.Contains((i, j)))
                {
                    continue;
                }

                InfluxLayout.AppendLine(_lines, InfluxLayout.Quarantine, batch.DeviceId, batch.PatientId, quarantined[j], commitId, "implausible");
                lines = EndChunkIfFull(lines + 1);
            }

            var keptQuarantined = kept is null ? batch.Quarantined : kept.ToArray();
            outcomes[i] = stored is null || stored.Count == readings.Length
                ? new BatchOutcome(CommitOutcome.Stored, batch.Readings, 0, keptQuarantined)
                : new BatchOutcome(CommitOutcome.Stored, stored.ToArray(), readings.Length - stored.Count - conflicts, keptQuarantined, conflicts);
        }

        if (lines > 0)
        {
            _chunks.Add(_lines.ToString());
        }
    }

    /// <summary>Whether every reading of batch <paramref name="batch"/> repeats one stored (or sent earlier in the flush) with its value.</summary>
    private bool AllRepeated(int batch, int readings)
    {
        for (var j = 0; j < readings; j++)
        {
            if (!_repeated.Contains((batch, j)))
            {
                return false;
            }
        }

        return true;
    }

    private int EndChunkIfFull(int lines)
    {
        if (lines < MaxLinesPerWrite)
        {
            return lines;
        }

        _chunks.Add(_lines.ToString());
        _lines.Clear();
        return 0;
    }

    /// <summary>
    /// Whether a batch whose readings the server does not show was sent before under its number: the number committed, and
    /// its write possibly not searchable yet, as this store's write of that number was answered less than
    /// <see cref="ReadableAfter"/> ago, or the store before it (a restart) may have written it while this one has been
    /// open less than that. A number committed longer ago whose readings are not found is a number used again (an app reinstalled,
    /// counting from 1 again): its readings are new, and stored.
    /// </summary>
    private bool SentBeforeUnseen(string deviceId, ulong sequence)
    {
        if (!_sequences.IsCommitted(deviceId, sequence))
        {
            return false;
        }

        var nowMs = _timeProvider.GetUtcNow().ToUnixTimeMilliseconds();
        var readableAfterMs = (long)ReadableAfter.TotalMilliseconds;
        return nowMs - _openedMs < readableAfterMs
            || (_numbersWrittenMs.TryGetValue((deviceId, sequence), out var writtenMs) && nowMs - writtenMs < readableAfterMs);
    }

    /// <summary>Remembers, for <see cref="ReadableAfter"/>, the numbers of the batches whose readings this write stored.</summary>
    private void NoteNumbersWritten(IReadOnlyList<DeviceBatch> batches, ReadOnlySpan<BatchOutcome> outcomes)
    {
        var nowMs = _timeProvider.GetUtcNow().ToUnixTimeMilliseconds();
        var readableAfterMs = (long)ReadableAfter.TotalMilliseconds;
        while (_numbersWrittenOrder.TryPeek(out var oldest) && nowMs - oldest.AtMs >= readableAfterMs)
        {
            _numbersWrittenOrder.Dequeue();
            if (_numbersWrittenMs.TryGetValue((oldest.DeviceId, oldest.Sequence), out var atMs) && atMs == oldest.AtMs)
            {
                _numbersWrittenMs.Remove((oldest.DeviceId, oldest.Sequence));
            }
        }

        for (var i = 0; i < batches.Count; i++)
        {
            if (batches[i].Sequence != 0 && outcomes[i].Outcome == CommitOutcome.Stored)
            {
                _numbersWrittenMs[(batches[i].DeviceId, batches[i].Sequence)] = nowMs;
                _numbersWrittenOrder.Enqueue((batches[i].DeviceId, batches[i].Sequence, nowMs));
            }
        }
    }

    private void RecordSequences(bool minutesRecorded)
    {
        if (!_sequences.HasStaged && minutesRecorded)
        {
            _sequences.Committed(_ledgerConnection, _ledgerFiles.Active, _lastCommitId);
            return;
        }

        try
        {
            _ledgerFiles.BetweenCommits();
            var catalog = _ledgerFiles.Active;
            using var transaction = _ledgerConnection.BeginTransaction();
            _sequences.AppendStaged(_ledgerConnection, catalog);
            if (!minutesRecorded)
            {
                AppendMinutes(catalog, _lastCommitId);
            }

            transaction.Commit();
            _sequences.Committed(_ledgerConnection, catalog, _lastCommitId);
        }
        catch (Exception exception)
        {
            // The readings are stored; only the memory of their batch numbers is lost, so a resend is stored once
            // again (same series and time) and may be counted twice in the live windows until the next rebuild.
            _sequences.RolledBack();
            LogLedgerFailed(_logger, exception);
        }
    }

    /// <summary>Records the minutes of the commit <paramref name="commitId"/> stores readings in; false if the local file did not take them.</summary>
    private bool RecordMinutes(long commitId)
    {
        if (_minutes.Count == 0)
        {
            return true;
        }

        try
        {
            _ledgerFiles.BetweenCommits();
            using var transaction = _ledgerConnection.BeginTransaction();
            AppendMinutes(_ledgerFiles.Active, commitId);
            transaction.Commit();
            return true;
        }
        catch (Exception exception)
        {
            // A grain call of this commit that fails, or a write of it cut short, is then not repaired.
            LogMinutesLost(_logger, exception);
            return false;
        }
    }

    private void AppendMinutes(string catalog, long commitId)
    {
        using var appender = _ledgerConnection.CreateAppender(catalog, "main", "commit_minutes");
        foreach (var (patientId, kind, minute) in _minutes)
        {
            appender.CreateRow().AppendValue(commitId).AppendValue(patientId).AppendValue((byte)kind).AppendValue(minute).EndRow();
        }
    }

    /// <summary>
    /// Before a commit's lookups: readings (or quarantined ones) this server wrote lately may not be searchable yet, so the
    /// server is asked to show them first (where it can be: VictoriaMetrics), once per commit, and only while its last
    /// write (or this store's start: a store before it, just stopped, may have written then) is within
    /// <see cref="ReadableAfter"/>. A reading sent again under another batch number, or by devices resending what had no
    /// answer when the server restarted, is then known for one, and one sent with another value is not written over the
    /// first.
    /// </summary>
    private async Task ShowRecentWritesAsync(CancellationToken cancellationToken)
    {
        var lastWriteMs = Math.Max(_lastCommitId / 1_000, _openedMs);
        if (_shownForLookups || _timeProvider.GetUtcNow().ToUnixTimeMilliseconds() - lastWriteMs >= (long)ReadableAfter.TotalMilliseconds)
        {
            return;
        }

        _shownForLookups = true;
        await ShowAnsweredWritesAsync(cancellationToken);
    }

    /// <summary>
    /// Asks the server to show every write it answered before (where it can be asked to), so a grain rebuilding right
    /// after another server's last commits (one killed, say) has them.
    /// </summary>
    public async Task ShowAnsweredWritesAsync(CancellationToken cancellationToken = default)
    {
        if (!await Reader.ShowAnsweredWritesAsync(cancellationToken) && _backend.CanShowAnsweredWrites && Interlocked.Exchange(ref _flushRefusedLogged, 1) == 0)
        {
            LogFlushRefused(_logger, _backend.Description);
        }
    }

    public Task<RawAggregate> AggregateAsync(string patientId, long fromMs, long toMs, Resolution resolution, CancellationToken cancellationToken = default) =>
        Reader.AggregateAsync(patientId, fromMs, toMs, resolution, cancellationToken);

    public Task<IReadOnlyList<QuarantinedReading>> ReadQuarantineAsync(string deviceId, int limit, CancellationToken cancellationToken = default) =>
        Reader.ReadQuarantineAsync(deviceId, limit, cancellationToken);

    public Task<IReadOnlyList<StoredReading>> ReadAsync(string patientId, VitalKind kind, long fromMs, long toMs, int limit, CancellationToken cancellationToken = default) =>
        Reader.ReadAsync(patientId, kind, fromMs, toMs, limit, cancellationToken);

    public Task<IReadOnlyList<StoredReading>> ReadLatestAsync(string patientId, IReadOnlyCollection<VitalKind> kinds, long fromMs, long toMs, int perKind, CancellationToken cancellationToken = default) =>
        Reader.ReadLatestAsync(patientId, kinds, fromMs, toMs, perKind, cancellationToken);

    public IAsyncEnumerable<StoredReading> StreamAsync(string patientId, IReadOnlyCollection<VitalKind> kinds, long fromMs, long toMs, CancellationToken cancellationToken = default) =>
        Reader.StreamAsync(patientId, kinds, fromMs, toMs, cancellationToken);

    /// <summary>Deletes through the server's delete API; the server does not say how many points went, so this answers -1.</summary>
    public async Task<long> DeleteBeforeAsync(long beforeMs, CancellationToken cancellationToken = default)
    {
        foreach (var measurement in new[] { InfluxLayout.Vitals, InfluxLayout.Quarantine })
        {
            await Reader.DeleteBeforeAsync(measurement, null, beforeMs, cancellationToken);
        }

        return -1;
    }

    public void Dispose() => _ledgerConnection.Dispose();

    [LoggerMessage(EventId = 2301, Level = LogLevel.Warning, Message = "Readings are in InfluxDB but their batch numbers could not be recorded in the local file; a resend of those batches will be stored once but may be counted twice in live windows")]
    private static partial void LogLedgerFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 2303, Level = LogLevel.Warning, Message = "{Server} did not flush its buffered writes when asked (/internal/force_flush); grains that rebuild, and the lookups of readings sent again, rely on ReadableAfter alone")]
    private static partial void LogFlushRefused(ILogger logger, string server);

    [LoggerMessage(EventId = 2302, Level = LogLevel.Warning, Message = "The minutes of a commit could not be recorded in the local file; if its write is cut short or a grain call of it fails, patients' trends may lack its readings")]
    private static partial void LogMinutesLost(ILogger logger, Exception exception);
}
