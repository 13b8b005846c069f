using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Microsoft.Win32.SafeHandles;
using Telemetry.Core;
using Telemetry.Core.Storage;
using Telemetry.Storage.DuckDb;

namespace Telemetry.Storage.Audit;

/// <summary>
/// The audit log: append-only files of JSON lines beside the database, one per UTC day (<c>audit-2026-12-01.log</c>),
/// one <see cref="AuditRecord"/> per access, each hashing the one before across files. A record is written to its file
/// (one write at the file's end, nothing kept back in the process) before the response it describes is sent, so a
/// killed process loses none, and a write that fails (a full disk) is cut off again, so the chain never holds a record
/// of a request that failed, nor one twice. The file is flushed to disk every <see cref="SyncInterval"/>, beside the
/// writes rather than between them, so a power cut loses at most that much (a commit's fsync per read would cost every
/// trend read about 9 ms). Reads go from the newest day back and stop when they have enough, so they cost what they
/// return rather than the log's whole history.
/// </summary>
public sealed partial class AuditLog : IAuditTrail, IHostedService, IAsyncDisposable
{
    /// <summary>The single file of earlier versions, read as the oldest part of the chain.</summary>
    public const string LegacyFileName = "audit.log";
    public const string Genesis = "0000000000000000000000000000000000000000000000000000000000000000";

    /// <summary>
    /// The file, beside the audit files, into which whoever archives the oldest days' files copies the last record
    /// archived (its line): the chain left starts from it, and a log whose every file was archived goes on after it.
    /// </summary>
    public const string AnchorFileName = "audit-archived-through";
    public static readonly TimeSpan SyncInterval = TimeSpan.FromMilliseconds(100);

    private const string SegmentPrefix = "audit-";
    private const string SegmentSuffix = ".log";
    private const string DayFormat = "yyyy-MM-dd";

    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly TimeProvider _timeProvider;
    private readonly ILogger<AuditLog> _logger;
    private readonly CancellationTokenSource _stopping = new();
    // The open file and where its end is (both changed under the gate only). Writes are counted, and the count the
    // last flush to disk covered kept, so the flush runs beside the writes and only when there is something to flush.
    private SafeFileHandle? _file;
    private long _length;
    private DateOnly _day;
    private Task _syncing = Task.CompletedTask;
    private long _seq;
    private string _last = Genesis;
    private long _written;
    private long _synced;
    private int _disposed;

    public AuditLog(IOptions<DuckDbOptions> storage, TimeProvider timeProvider, ILogger<AuditLog> logger)
    {
        _timeProvider = timeProvider;
        _logger = logger;
        Directory = Path.GetDirectoryName(storage.Value.Beside(LegacyFileName))!;
        Core.Storage.PrivateFolder.Create(Directory);

        // Continue the chain where the newest file ends, and in no older file than that even if the clock says so; a
        // record torn by a power cut is left for Verify to report.
        var segments = Segments().ToList();
        _day = segments.LastOrDefault(segment => segment.Day is not null).Day ?? DateOnly.MinValue;
        foreach (var segment in Enumerable.Reverse(segments))
        {
            if (ReadAll(segment.Path, skipDamaged: true).LastOrDefault() is { } last)
            {
                (_seq, _last) = (last.Seq, last.Hash);
                break;
            }
        }

        // Every file archived: the chain goes on from the last record archived, not from the start again.
        if (_seq == 0 && DeclaredAnchor() is { } archived)
        {
            (_seq, _last) = (archived.Seq, archived.Hash);
        }
    }

    /// <summary>The folder of the audit files: the database's.</summary>
    public string Directory { get; }

    Task IAuditTrail.RecordAsync(string actor, string role, string? patientId, string action, int status, CancellationToken cancellationToken) =>
        WriteAsync(actor, role, patientId, action, status, cancellationToken);

    /// <summary>Appends a record of one access; returns once it is in the file.</summary>
    public async Task<AuditRecord> WriteAsync(string actor, string role, string? patientId, string action, int status, CancellationToken cancellationToken = default)
    {
        var outcome = status switch
        {
            < 400 => "success",
            401 or 403 => "denied",
            499 => "abandoned",
            < 500 => "refused",
            _ => "failed",
        };
        await _gate.WaitAsync(cancellationToken);
        try
        {
            var at = _timeProvider.GetUtcNow();
            var file = FileFor(DateOnly.FromDateTime(at.UtcDateTime));
            var record = Seal(new AuditRecord(_seq + 1, at, actor, role, patientId, action, status, outcome, _last, string.Empty));

            // One write of the whole line, so a reader never meets half a record but at the very end.
            var json = JsonSerializer.SerializeToUtf8Bytes(record, TelemetryJson.Options);
            var line = new byte[json.Length + 1];
            json.CopyTo(line, 0);
            line[^1] = (byte)'\n';
            try
            {
                RandomAccess.Write(file, line, _length);
            }
            catch (Exception)
            {
                // Whatever part of it reached the file is cut off: the request fails, and the record is not in the chain.
                CutBack(file);
                throw;
            }

            _length += line.Length;
            (_seq, _last) = (record.Seq, record.Hash);
            Interlocked.Increment(ref _written);
            return record;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// The newest records first (in the chain's order) that match, at most <paramref name="limit"/>, from before
    /// <paramref name="beforeSeq"/> when given: a page after one that ended at record N asks for those before N, which
    /// no step of the clock can make it skip or repeat. Reads back only as far as it must: a day's file after
    /// <paramref name="to"/> (by a day more, for a clock stepped back) or all of whose records are from
    /// <paramref name="beforeSeq"/> on is not read through.
    /// </summary>
    public IReadOnlyList<AuditRecord> Query(string? patientId, string? actor, DateTimeOffset? from, DateTimeOffset? to, int limit, long? beforeSeq = null)
    {
        if (limit <= 0)
        {
            return [];
        }

        var newest = new List<AuditRecord>(Math.Min(limit, 1_024));
        var latest = new Queue<AuditRecord>();
        foreach (var segment in Segments().Reverse())
        {
            // A day's file holds nothing from after that day (the day only moves forward), so whole files before 'from' are skipped.
            if (from is { } start && segment.Day is { } day && day.AddDays(1).ToDateTime(TimeOnly.MinValue, DateTimeKind.Utc) <= start.UtcDateTime)
            {
                break;
            }

            // A day's file begins (its first record) after the day began, unless the clock stepped back: by a day at most.
            if (to is { } end && segment.Day is { } of && of.AddDays(-1).ToDateTime(TimeOnly.MinValue, DateTimeKind.Utc) >= end.UtcDateTime)
            {
                continue;
            }

            if (beforeSeq is { } before && ReadAll(segment.Path, skipDamaged: true).FirstOrDefault() is { } first && first.Seq >= before)
            {
                continue;
            }

            // A day's file is read through once, holding only its latest matches that are still wanted.
            var wanted = limit - newest.Count;
            latest.Clear();
            foreach (var record in ReadAll(segment.Path, skipDamaged: true))
            {
                if ((patientId is null || record.PatientId == patientId) && (actor is null || record.Actor == actor)
                    && (from is null || record.At >= from) && (to is null || record.At < to) && (beforeSeq is null || record.Seq < beforeSeq))
                {
                    if (latest.Count == wanted)
                    {
                        latest.Dequeue();
                    }

                    latest.Enqueue(record);
                }
            }

            newest.AddRange(latest.Reverse());

            if (newest.Count == limit)
            {
                break;
            }
        }

        return newest;
    }

    /// <summary>
    /// Checks the whole chain across every file: every record exactly as it is on disk, its hash, its link and its
    /// sequence number. A line that is not a record, followed by one that links to the record before it, was torn by a
    /// power cut and never joined the chain: it is listed, not counted as a break. The answer ends with the newest
    /// record's hash, to keep elsewhere: truncating the newest records is found only against such a copy. The chain starts
    /// at the genesis hash, or, once the oldest days' files are archived, at the hash of the last record archived, which
    /// the archiver writes into <see cref="AnchorFileName"/>: a first record that links to neither is a break, so records
    /// removed from the start of the log are found as those removed anywhere else.
    /// </summary>
    public AuditVerification Verify()
    {
        var previous = Genesis;
        long records = 0;
        long? firstSeq = null;
        var anchor = Genesis;
        var torn = new List<string>();
        (string File, long Line)? damaged = null;
        foreach (var segment in Segments())
        {
            var file = Path.GetFileName(segment.Path);
            long line = 0;
            foreach (var text in File.ReadLines(segment.Path, Encoding.UTF8))
            {
                line++;
                if (text.Length == 0)
                {
                    continue;
                }

                AuditRecord? record;
                try
                {
                    record = JsonSerializer.Deserialize<AuditRecord>(text, TelemetryJson.Options);
                }
                catch (JsonException)
                {
                    record = null;
                }

                if (record is null)
                {
                    if (damaged is { } earlier)
                    {
                        return Broken(earlier.File, earlier.Line);
                    }

                    damaged = (file, line);
                    continue;
                }

                if (firstSeq is null)
                {
                    // The log's first record links to the genesis hash; a later one, where older files were archived,
                    // to the hash the archiver declared.
                    firstSeq = record.Seq;
                    if (record.Seq > 1 && DeclaredAnchor() is { } declared && declared.Seq + 1 == record.Seq)
                    {
                        previous = anchor = declared.Hash;
                    }
                }

                var links = record.Seq == firstSeq + records && record.Previous == previous
                    && Seal(record with { Hash = string.Empty }).Hash == record.Hash
                    && JsonSerializer.Serialize(record, TelemetryJson.Options) == text;
                if (!links)
                {
                    return damaged is { } earlier ? Broken(earlier.File, earlier.Line) : Broken(file, line);
                }

                if (damaged is { } tornLine)
                {
                    torn.Add($"{tornLine.File}:{tornLine.Line}");
                    damaged = null;
                }

                (previous, records) = (record.Hash, records + 1);
            }
        }

        if (damaged is { } tail)
        {
            torn.Add($"{tail.File}:{tail.Line}");
        }

        return new AuditVerification(true, records, null, null, previous, torn, firstSeq ?? 1, anchor);

        AuditVerification Broken(string file, long line) => new(false, records, line, file, previous, torn, firstSeq ?? 1, anchor);
    }

    /// <summary>The last record archived, as the archiver copied it (whole and sealed); null when none was, or it is not.</summary>
    private AuditRecord? DeclaredAnchor()
    {
        try
        {
            var path = Path.Combine(Directory, AnchorFileName);
            return File.Exists(path) && JsonSerializer.Deserialize<AuditRecord>(File.ReadAllText(path).Trim(), TelemetryJson.Options) is { } record
                && Seal(record with { Hash = string.Empty }).Hash == record.Hash
                ? record
                : null;
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException or JsonException)
        {
            return null;
        }
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        _syncing = SyncAsync(_stopping.Token);
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync();
        await _syncing;

        // The last flush waits for any write under way, so none goes unflushed.
        await _gate.WaitAsync(CancellationToken.None);
        try
        {
            Sync();
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Closes the file. Safe to call twice: the host disposes a singleton that is also its hosted service twice.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }

        await _stopping.CancelAsync();
        await _syncing;
        _file?.Dispose();

        _stopping.Dispose();
        _gate.Dispose();
    }

    /// <summary>The audit files, oldest first: the legacy single file, then one per day.</summary>
    private IEnumerable<(string Path, DateOnly? Day)> Segments()
    {
        var legacy = Path.Combine(Directory, LegacyFileName);
        if (File.Exists(legacy))
        {
            yield return (legacy, null);
        }

        var days = new List<(string, DateOnly?)>();
        foreach (var path in System.IO.Directory.EnumerateFiles(Directory, SegmentPrefix + "*" + SegmentSuffix))
        {
            var name = Path.GetFileName(path);
            if (DateOnly.TryParseExact(name[SegmentPrefix.Length..^SegmentSuffix.Length], DayFormat, CultureInfo.InvariantCulture, DateTimeStyles.None, out var day))
            {
                days.Add((path, day));
            }
        }

        foreach (var segment in days.OrderBy(segment => segment.Item2))
        {
            yield return segment;
        }
    }

    /// <summary>
    /// The open file for a record of <paramref name="day"/>. The day never moves back, in this process or across
    /// restarts, so a clock set back keeps writing the newest file and the files stay in chain order.
    /// </summary>
    private SafeFileHandle FileFor(DateOnly day)
    {
        var target = day > _day ? day : _day;
        if (_file is not null && target == _day)
        {
            return _file;
        }

        if (_file is not null)
        {
            RandomAccess.FlushToDisk(_file);
            _file.Dispose();
            _file = null;
        }

        var path = Path.Combine(Directory, SegmentPrefix + target.ToString(DayFormat, CultureInfo.InvariantCulture) + SegmentSuffix);
        var created = !File.Exists(path);
        if (created && !OperatingSystem.IsWindows())
        {
            // Who read which patient's data: made its owner's alone, whatever the umask (and the folder's mode), from the
            // start (one tightened after it was made could be opened by another user meanwhile).
            try
            {
                new FileStream(path, new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite }).Dispose();
            }
            catch (IOException) when (File.Exists(path))
            {
                // Made meanwhile (by nothing else of this server's): it is opened as it is.
            }
        }

        var file = File.OpenHandle(path, FileMode.OpenOrCreate, FileAccess.Write, FileShare.Read);
        var length = RandomAccess.GetLength(file);
        if (length > 0 && !EndsWithNewLine(path))
        {
            // After a torn record: the next one starts on its own line.
            try
            {
                RandomAccess.Write(file, "\n"u8, length);
            }
            catch (Exception)
            {
                file.Dispose();
                throw;
            }

            length++;
        }

        if (created)
        {
            // The new file's name is in the folder only once the folder is on disk too; the file's own flushes do not
            // cover it, so without this a power cut just after midnight could lose the day's first records.
            _ = Folders.Sync(Directory);
        }

        (_file, _length, _day) = (file, length, target);
        return file;
    }

    /// <summary>
    /// After a failed write: cuts the file back to its last whole record. If even that fails, the file is closed, and
    /// the next write opens it again (starting on a line of its own after whatever part is left, which the chain skips
    /// as a torn record).
    /// </summary>
    private void CutBack(SafeFileHandle file)
    {
        try
        {
            RandomAccess.SetLength(file, _length);
        }
        catch (Exception exception)
        {
            LogCutBackFailed(_logger, exception, Directory);
            file.Dispose();
            _file = null;
        }
    }

    private static bool EndsWithNewLine(string path)
    {
        using var reader = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        reader.Seek(-1, SeekOrigin.End);
        return reader.ReadByte() == '\n';
    }

    private static AuditRecord Seal(AuditRecord record)
    {
        var content = JsonSerializer.SerializeToUtf8Bytes(record with { Hash = string.Empty }, TelemetryJson.Options);
        return record with { Hash = Convert.ToHexStringLower(SHA256.HashData(content)) };
    }

    /// <summary>The records of one file; with <paramref name="skipDamaged"/>, lines that are not whole records (one being written, one torn by a power cut) are passed over, for <see cref="Verify"/> to report.</summary>
    private static IEnumerable<AuditRecord> ReadAll(string path, bool skipDamaged = false)
    {
        if (!File.Exists(path))
        {
            yield break;
        }

        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        while (reader.ReadLine() is { } line)
        {
            if (line.Length == 0)
            {
                continue;
            }

            AuditRecord? record;
            try
            {
                record = JsonSerializer.Deserialize<AuditRecord>(line, TelemetryJson.Options);
            }
            catch (JsonException) when (skipDamaged)
            {
                continue;
            }

            yield return record ?? throw new JsonException("empty audit record");
        }
    }

    private async Task SyncAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(SyncInterval, _timeProvider);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                Sync();
            }
        }
        catch (OperationCanceledException)
        {
            // Stopping: the last sync runs in StopAsync.
        }
    }

    /// <summary>
    /// Flushes what was written to disk, beside the writes: each write is already in the operating system's hands, so
    /// writers never wait for the flush, nor the flush for a stream of writers. A file closed meanwhile (the day moved
    /// on) was flushed as it closed.
    /// </summary>
    private void Sync()
    {
        var written = Interlocked.Read(ref _written);
        if (written == _synced || Volatile.Read(ref _file) is not { } file)
        {
            return;
        }

        try
        {
            RandomAccess.FlushToDisk(file);
            _synced = written;
        }
        catch (ObjectDisposedException)
        {
            // Closed meanwhile: by the day moving on (which flushed it), or after a write that failed. The next tick
            // flushes the file now open, and with it (one file, whichever handle) what this one had.
        }
        catch (IOException exception)
        {
            LogSyncFailed(_logger, exception, Directory);
        }
    }

    [LoggerMessage(EventId = 4101, Level = LogLevel.Error, Message = "Flushing the audit log in {Directory} to disk failed")]
    private static partial void LogSyncFailed(ILogger logger, Exception exception, string directory);

    [LoggerMessage(EventId = 4102, Level = LogLevel.Error, Message = "A record the audit log in {Directory} could not write could not be cut off its file either; the file is opened again for the next record")]
    private static partial void LogCutBackFailed(ILogger logger, Exception exception, string directory);
}

/// <summary>
/// The result of checking the audit chain: whether it is intact, how many records were good, where it first breaks
/// (the file and its line), the hash of the last good record, the lines torn by a power cut (<c>file:line</c>), and
/// where the chain checked starts: the first record's number (1, unless older days' files were archived) and the hash
/// it links to (the genesis hash, or the one declared archived through).
/// </summary>
public sealed record AuditVerification(bool Intact, long Records, long? FirstBrokenLine, string? File, string LastHash, IReadOnlyList<string> Torn, long FirstSeq, string AnchorHash);
