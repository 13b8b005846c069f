using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text.Json;
using Telemetry.Core;
using Telemetry.Core.Alerts;

namespace Telemetry.Storage.DuckDb;

/// <summary>
/// The journal in front of the database file's grain state and alert log (see <see cref="DuckDbStateWrites"/>): each
/// group of writes is appended as one record and flushed to the disk before any of its writers is answered, and the
/// records are written into the database file later, many at once. A record is its length, a CRC-32 of its body and the
/// body (JSON); reading stops at the first record that is torn or does not match its CRC, as the tail of a write a
/// crash interrupted is.
/// </summary>
internal sealed class StateJournal : IDisposable
{
    private const int HeaderBytes = 8;

    // A record larger than this is not one this journal wrote: the length of a torn header.
    private const int MaxRecordBytes = 256 * 1024 * 1024;

    private readonly FileStream _file;

    // Set when a failed record could not be cut off: what follows it would not be read, so nothing more is appended
    // until the journal is emptied (the database file then holding every whole record before it).
    private Exception? _broken;

    public StateJournal(string path)
    {
        Path = path;
        _file = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.Read, bufferSize: 0);
    }

    public string Path { get; }

    /// <summary>The journal's size in bytes.</summary>
    public long Length => _file.Length;

    /// <summary>Whether a failed record could not be cut off: appends fail until the journal is emptied (<see cref="Clear"/>).</summary>
    public bool IsBroken => _broken is not null;

    /// <summary>The records in the file, oldest first, up to the first that is torn; the file is cut there, so the next record follows the last whole one.</summary>
    public List<StateJournalRecord> ReadAll()
    {
        var records = new List<StateJournalRecord>();
        _file.Position = 0;
        var header = new byte[HeaderBytes];
        long end = 0;
        while (_file.ReadAtLeast(header, HeaderBytes, throwOnEndOfStream: false) == HeaderBytes)
        {
            var length = BinaryPrimitives.ReadInt32LittleEndian(header);
            var crc = BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(4));
            if (length <= 0 || length > MaxRecordBytes || _file.Length - _file.Position < length)
            {
                break;
            }

            var body = new byte[length];
            _file.ReadExactly(body);
            if (Crc32.HashToUInt32(body) != crc)
            {
                break;
            }

            records.Add(JsonSerializer.Deserialize<StateJournalRecord>(body, TelemetryJson.Options)!);
            end = _file.Position;
        }

        if (end != _file.Length)
        {
            _file.SetLength(end);
            _file.Flush(flushToDisk: true);
        }

        _file.Position = end;
        return records;
    }

    /// <summary>Appends a record and returns once it is on the disk; when this throws, the journal holds nothing of it.</summary>
    public void Append(StateJournalRecord record)
    {
        if (_broken is not null)
        {
            throw new IOException($"{Path} could not cut off a record that failed; nothing more is written to it until it is emptied (once the database file holds the records before it).", _broken);
        }

        var body = JsonSerializer.SerializeToUtf8Bytes(record, TelemetryJson.Options);
        if (body.Length > MaxRecordBytes)
        {
            throw new InvalidOperationException($"A record of {body.Length} bytes is over the journal's limit of {MaxRecordBytes}.");
        }

        var buffer = new byte[HeaderBytes + body.Length];
        BinaryPrimitives.WriteInt32LittleEndian(buffer, body.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(buffer.AsSpan(4), Crc32.HashToUInt32(body));
        body.CopyTo(buffer, HeaderBytes);
        var start = _file.Position;
        try
        {
            _file.Write(buffer);
            _file.Flush(flushToDisk: true);
        }
        catch (Exception failure)
        {
            // What may have reached the file of a failed record is cut off, so that the next one follows the last whole one.
            try
            {
                _file.SetLength(start);
                _file.Position = start;
                _file.Flush(flushToDisk: true);
            }
            catch (Exception exception)
            {
                _broken = exception;
            }

            throw new IOException($"Appending to {Path} failed.", failure);
        }
    }

    /// <summary>Empties the journal once the database file holds every record in it; returns once that is on the disk.</summary>
    public void Clear()
    {
        _file.SetLength(0);
        _file.Position = 0;
        _file.Flush(flushToDisk: true);
        _broken = null;
    }

    public void Dispose() => _file.Dispose();
}

/// <summary>One group of writes: the grain states it leaves (in order) and the alert events it stored, with their positions.</summary>
internal sealed record StateJournalRecord(IReadOnlyList<JournaledState> States, IReadOnlyList<JournaledEvent> Events);

/// <summary>A grain's state as written (<see cref="Data"/> null when it was cleared), with its new ETag.</summary>
internal sealed record JournaledState(string StateName, string GrainId, string? ETag, byte[]? Data);

/// <summary>An alert event as stored, at its position in the log.</summary>
internal sealed record JournaledEvent(long Position, AlertEvent Event);
