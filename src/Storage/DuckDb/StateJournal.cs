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
/// crash interrupted is. The journal is emptied once the file holds every record in it, and, when records keep coming
/// while the file takes the ones before, cut down to the records the file does not hold yet (<see cref="DropOldest"/>).
/// </summary>
internal sealed class StateJournal : IDisposable
{
    private const int HeaderBytes = 8;

    // A record larger than this is not one this journal wrote: the length of a torn header.
    private const int MaxRecordBytes = 256 * 1024 * 1024;

    private FileStream _file;

    // Where each record in the file starts, oldest first.
    private readonly List<long> _starts = [];

    // Set when a failed record could not be cut off (what follows it would not be read), or the journal's cutting down
    // not made sure on the disk: nothing more is appended until the journal is emptied (the database file then holding
    // every whole record before it).
    private Exception? _broken;

    // Set when the journal was cut down and its folder could not be flushed after: a crash might bring back the journal
    // as it was, records the file holds with it, so the folder is flushed before the journal is emptied.
    private bool _folderUnsynced;

    public StateJournal(string path)
    {
        Path = path;
        _file = Open(path, FileMode.OpenOrCreate);

        // A copy that a crash cut short, before it took the journal's name (it is whole, then). And the folder flushed,
        // as far as it can be: the journal's name may be that of a copy whose rename a stop (not a crash) left unflushed.
        DeleteCopy();
        _ = SyncFolder();
    }

    public string Path { get; }

    /// <summary>The journal's size in bytes.</summary>
    public long Length => _file.Length;

    /// <summary>How many records the journal holds.</summary>
    public int Count => _starts.Count;

    /// <summary>The bytes the journal's first <paramref name="count"/> records take (<see cref="DropOldest"/> would drop).</summary>
    public long LengthOf(int count) => count <= 0 ? 0 : count < _starts.Count ? _starts[count] : _file.Length;

    /// <summary>Whether a failed record could not be cut off, or the journal's cutting down not made sure on the disk: appends fail until the journal is emptied (<see cref="Clear"/>).</summary>
    public bool IsBroken => _broken is not null;

    /// <summary>The records in the file, oldest first, up to the first that is torn; the file is cut there, so the next record follows the last whole one.</summary>
    public List<StateJournalRecord> ReadAll()
    {
        var records = new List<StateJournalRecord>();
        _starts.Clear();
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
            _starts.Add(end);
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
            throw new IOException($"Nothing more is written to {Path} until it is emptied (once the database file holds the records before it): {_broken.Message}", _broken);
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
            _starts.Add(start);
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
                _broken = new IOException($"A record that failed could not be cut off: {exception.Message}", exception);
            }

            throw new IOException($"Appending to {Path} failed.", failure);
        }
    }

    /// <summary>Empties the journal once the database file holds every record in it; returns once that is on the disk.</summary>
    public void Clear()
    {
        if (_folderUnsynced)
        {
            if (!SyncFolder())
            {
                throw new IOException($"The folder of {Path} could not be flushed to the disk; the journal is not emptied until it is.");
            }

            _folderUnsynced = false;
        }

        _file.SetLength(0);
        _starts.Clear();
        _file.Position = 0;
        _file.Flush(flushToDisk: true);
        _broken = null;
    }

    /// <summary>
    /// Drops the oldest <paramref name="count"/> records, once the database file holds them: the records after them are
    /// copied to a new file, flushed, which then takes the journal's name; returns once that is on the disk. When this
    /// throws before the new file took the name, the journal is as it was; after (the folder's entry could not be made
    /// sure on the disk, so a crash might bring back the journal as it was, without what is appended next), nothing more
    /// is appended until it is emptied, as when a record could not be cut off, and it is emptied only once the folder is
    /// flushed.
    /// </summary>
    public void DropOldest(int count)
    {
        if (count <= 0 || _broken is not null)
        {
            return;
        }

        if (count >= _starts.Count)
        {
            Clear();
            return;
        }

        var from = _starts[count];
        var end = _file.Position;
        var next = CopyPath;
        FileStream? kept = null;
        try
        {
            kept = Open(next, FileMode.Create);
            _file.Position = from;
            _file.CopyTo(kept);
            kept.Flush(flushToDisk: true);
            File.Move(next, Path, overwrite: true);
        }
        catch
        {
            kept?.Dispose();
            _file.Position = end;
            DeleteCopy();
            throw;
        }

        // The new file has the journal's name: from here on it is the journal.
        _file.Dispose();
        _file = kept;
        _starts.RemoveRange(0, count);
        for (var i = 0; i < _starts.Count; i++)
        {
            _starts[i] -= from;
        }

        if (!SyncFolder())
        {
            _folderUnsynced = true;
            _broken = new IOException($"The folder of {Path} could not be flushed to the disk after the journal was cut down.");
            throw _broken;
        }
    }

    public void Dispose() => _file.Dispose();

    private string CopyPath => Path + ".next";

    private void DeleteCopy()
    {
        try
        {
            File.Delete(CopyPath);
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException)
        {
            // Left for the next cut-down, which writes over it.
        }
    }

    private bool SyncFolder()
    {
        try
        {
            return Folders.Sync(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(Path))!);
        }
        catch (Exception)
        {
            // The call itself missing (a platform without it) counts as a failure here: the cut-down is then not known to be on the disk.
            return false;
        }
    }

    // Unbuffered (each record is written whole and flushed), and open to being renamed over while open (DropOldest).
    private static FileStream Open(string path, FileMode mode) =>
        new(path, mode, FileAccess.ReadWrite, FileShare.Read | FileShare.Delete, bufferSize: 0);
}

/// <summary>One group of writes: the grain states it leaves (in order) and the alert events it stored, with their positions.</summary>
internal sealed record StateJournalRecord(IReadOnlyList<JournaledState> States, IReadOnlyList<JournaledEvent> Events);

/// <summary>A grain's state as written (<see cref="Data"/> null when it was cleared), with its new ETag.</summary>
internal sealed record JournaledState(string StateName, string GrainId, string? ETag, byte[]? Data);

/// <summary>An alert event as stored, at its position in the log.</summary>
internal sealed record JournaledEvent(long Position, AlertEvent Event);
