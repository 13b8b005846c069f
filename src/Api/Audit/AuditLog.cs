using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Options;
using Telemetry.Core;
using Telemetry.Storage.DuckDb;

namespace Telemetry.Api.Audit;

/// <summary>
/// The audit log: an append-only file of JSON lines beside the database (<c>audit.log</c>), one
/// <see cref="AuditRecord"/> per access, each hashing the one before. A record is written to the file before the
/// response it describes is sent, so a killed process loses none; the file is flushed to disk every
/// <see cref="SyncInterval"/>, so a power cut loses at most that much (a commit's fsync per read would cost every
/// trend read about 9 ms).
/// </summary>
public sealed partial class AuditLog : IHostedService, IAsyncDisposable
{
    public const string FileName = "audit.log";
    public const string Genesis = "0000000000000000000000000000000000000000000000000000000000000000";
    public static readonly TimeSpan SyncInterval = TimeSpan.FromMilliseconds(100);

    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly FileStream _file;
    private readonly TimeProvider _timeProvider;
    private readonly ILogger<AuditLog> _logger;
    private readonly CancellationTokenSource _stopping = new();
    private Task _syncing = Task.CompletedTask;
    private long _seq;
    private string _last = Genesis;
    private bool _dirty;

    public AuditLog(IOptions<DuckDbOptions> storage, TimeProvider timeProvider, ILogger<AuditLog> logger)
    {
        _timeProvider = timeProvider;
        _logger = logger;
        FilePath = Security.SecretFile.Beside(storage.Value.Path, FileName);
        Directory.CreateDirectory(Path.GetDirectoryName(FilePath)!);

        // Continue the chain where the file ends.
        if (File.Exists(FilePath))
        {
            foreach (var record in ReadAll(FilePath))
            {
                (_seq, _last) = (record.Seq, record.Hash);
            }
        }

        _file = new FileStream(FilePath, FileMode.Append, FileAccess.Write, FileShare.Read, 4_096, FileOptions.None);
    }

    public string FilePath { get; }

    /// <summary>Appends a record of one access; returns once it is in the file.</summary>
    public async Task<AuditRecord> WriteAsync(string actor, string role, string? patientId, string action, int status, CancellationToken cancellationToken = default)
    {
        var outcome = status switch
        {
            < 400 => "success",
            401 or 403 => "denied",
            < 500 => "refused",
            _ => "failed",
        };
        await _gate.WaitAsync(cancellationToken);
        try
        {
            var at = _timeProvider.GetUtcNow();
            var record = Seal(new AuditRecord(_seq + 1, at, actor, role, patientId, action, status, outcome, _last, string.Empty));
            // One write of the whole line, so a reader never meets half a record but at the very end.
            var json = JsonSerializer.SerializeToUtf8Bytes(record, TelemetryJson.Options);
            var line = new byte[json.Length + 1];
            json.CopyTo(line, 0);
            line[^1] = (byte)'\n';
            await _file.WriteAsync(line, CancellationToken.None);
            await _file.FlushAsync(CancellationToken.None);
            (_seq, _last, _dirty) = (record.Seq, record.Hash, true);
            return record;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>The newest records first that match, at most <paramref name="limit"/>.</summary>
    public IReadOnlyList<AuditRecord> Query(string? patientId, string? actor, DateTimeOffset? from, DateTimeOffset? to, int limit)
    {
        var newest = new Queue<AuditRecord>(limit);
        foreach (var record in ReadAll(FilePath, tolerateTornTail: true))
        {
            if ((patientId is null || record.PatientId == patientId) && (actor is null || record.Actor == actor)
                && (from is null || record.At >= from) && (to is null || record.At < to))
            {
                if (newest.Count == limit)
                {
                    newest.Dequeue();
                }

                newest.Enqueue(record);
            }
        }

        return [.. newest.Reverse()];
    }

    /// <summary>Checks the whole chain: every hash, every link, every sequence number. Null when intact, else the first broken record's line number.</summary>
    public static AuditVerification Verify(string path)
    {
        var previous = Genesis;
        long line = 0;
        try
        {
            foreach (var record in ReadAll(path))
            {
                line++;
                if (record.Seq != line || record.Previous != previous || Seal(record with { Hash = string.Empty }).Hash != record.Hash)
                {
                    return new AuditVerification(false, line - 1, line);
                }

                previous = record.Hash;
            }
        }
        catch (JsonException)
        {
            return new AuditVerification(false, line, line + 1);
        }

        return new AuditVerification(true, line, null);
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
        Sync();
    }

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        await _syncing;
        await _file.DisposeAsync();
        _stopping.Dispose();
        _gate.Dispose();
    }

    private static AuditRecord Seal(AuditRecord record)
    {
        var content = JsonSerializer.SerializeToUtf8Bytes(record with { Hash = string.Empty }, TelemetryJson.Options);
        return record with { Hash = Convert.ToHexStringLower(SHA256.HashData(content)) };
    }

    private static IEnumerable<AuditRecord> ReadAll(string path, bool tolerateTornTail = false)
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
            catch (JsonException) when (reader.EndOfStream && tolerateTornTail)
            {
                // A record being written as this reads: the next read has it whole.
                yield break;
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

    private void Sync()
    {
        if (!_gate.Wait(0))
        {
            return;
        }

        try
        {
            if (_dirty)
            {
                _file.Flush(flushToDisk: true);
                _dirty = false;
            }
        }
        catch (IOException exception)
        {
            LogSyncFailed(_logger, exception, FilePath);
        }
        finally
        {
            _gate.Release();
        }
    }

    [LoggerMessage(EventId = 4101, Level = LogLevel.Error, Message = "Flushing the audit log {Path} to disk failed")]
    private static partial void LogSyncFailed(ILogger logger, Exception exception, string path);
}

/// <summary>The result of checking the audit chain: whether it is intact, how many records were good, and the first bad line.</summary>
public sealed record AuditVerification(bool Intact, long Records, long? FirstBrokenLine);
