using DuckDB.NET.Data;
using Telemetry.Core.Vitals;

namespace Telemetry.Storage.DuckDb;

/// <summary>
/// The series of the raw store: one small integer per (patient, device, vital), so each stored reading carries a
/// 4-byte id instead of two strings and a kind. Strings cost the commit their copy into DuckDB's vectors and the
/// checkpoint their compression, on every reading; an id is looked up once per batch and vital.
/// </summary>
/// <remarks>
/// The commit loop is the only writer of series, so the ids are handed out here, in memory, and the new ones are appended
/// to the <c>series</c> table in the commit's own transaction. A failed commit leaves its new series staged, so the
/// next commit that goes through stores them (a series without readings is harmless; a reading without its series
/// would be lost to every query).
/// </remarks>
internal sealed class SeriesCatalog
{
    private readonly Dictionary<(string PatientId, string DeviceId, VitalKind Kind), int> _ids = [];
    private readonly List<(string PatientId, string DeviceId, VitalKind Kind, int Id)> _staged = [];
    private int _lastId;

    // Set when a commit failed: it may have failed after its transaction was durable (a commit can report an error
    // after the WAL is written), so the next append first drops the staged series the files already hold.
    private bool _mayBeStored;

    /// <summary>Reads the series every file holds (see <see cref="ReadingsFiles"/>).</summary>
    public SeriesCatalog(DuckDBConnection connection)
    {
        using var load = connection.CreateCommand();
        load.CommandText = "SELECT series_id, patient_id, device_id, kind FROM all_series";
        using var reader = load.ExecuteReader();
        while (reader.Read())
        {
            var id = reader.GetInt32(0);
            _ids[(reader.GetString(1), reader.GetString(2), (VitalKind)reader.GetByte(3))] = id;
            _lastId = Math.Max(_lastId, id);
        }
    }

    /// <summary>The series' id; a series new to the store gets the next one, stored with the current commit.</summary>
    public int IdOf(string patientId, string deviceId, VitalKind kind)
    {
        if (_ids.TryGetValue((patientId, deviceId, kind), out var id))
        {
            return id;
        }

        id = ++_lastId;
        _ids[(patientId, deviceId, kind)] = id;
        _staged.Add((patientId, deviceId, kind, id));
        return id;
    }

    /// <summary>True when series wait to be stored with the current commit.</summary>
    public bool HasStaged => _staged.Count > 0;

    /// <summary>
    /// Appends the series staged since the last commit that went through to the commit's file, inside its transaction.
    /// </summary>
    public void AppendStaged(DuckDBConnection connection, string catalog)
    {
        if (_staged.Count == 0)
        {
            return;
        }

        if (_mayBeStored)
        {
            using var stored = connection.CreateCommand();
            stored.CommandText = "SELECT series_id FROM all_series WHERE series_id >= $1";
            stored.Parameters.Add(new DuckDBParameter(_staged.Min(series => series.Id)));
            var inFile = new HashSet<int>();
            using (var reader = stored.ExecuteReader())
            {
                while (reader.Read())
                {
                    inFile.Add(reader.GetInt32(0));
                }
            }

            _staged.RemoveAll(series => inFile.Contains(series.Id));
        }

        using var appender = connection.CreateAppender(catalog, "main", "series");
        foreach (var (patientId, deviceId, kind, id) in _staged)
        {
            appender.CreateRow().AppendValue(id).AppendValue(patientId).AppendValue(deviceId).AppendValue((byte)kind).EndRow();
        }
    }

    /// <summary>The commit went through: the staged series are in its file.</summary>
    public void Committed()
    {
        _staged.Clear();
        _mayBeStored = false;
    }

    /// <summary>The commit failed: its series stay staged for the next commit, which checks which the files hold.</summary>
    public void Failed() => _mayBeStored = _staged.Count > 0;

    /// <summary>
    /// Moves a file from before series ids to them, once: the readings table of (patient, device, kind, time, value,
    /// commit) becomes the series table and readings of (series, time, value, commit, sequence number), in the order
    /// they were stored. Their sequence numbers are 0: that file's log (<c>device_sequences</c>) holds them.
    /// </summary>
    public static void MigrateReadings(DuckDBConnection connection)
    {
        if (!DuckDbDatabase.HasColumn(connection, "readings", "patient_id"))
        {
            return;
        }

        using var transaction = connection.BeginTransaction();
        using (var migrate = connection.CreateCommand())
        {
            migrate.CommandText = $"""
                ALTER TABLE readings RENAME TO readings_before_series;
                {SeriesSchema}
                INSERT INTO series
                    SELECT (row_number() OVER (ORDER BY patient_id, device_id, kind))::INTEGER, patient_id, device_id, kind
                    FROM (SELECT DISTINCT patient_id, device_id, kind FROM readings_before_series);
                INSERT INTO readings
                    SELECT s.series_id, r.ts, r.value, r.commit_id, 0
                    FROM readings_before_series r JOIN series s USING (patient_id, device_id, kind)
                    ORDER BY r.commit_id, r.ts;
                DROP TABLE readings_before_series;
                """;
            migrate.ExecuteNonQuery();
        }

        transaction.Commit();
    }

    /// <summary>The series and the readings that refer to them.</summary>
    public const string SeriesSchema = """
        CREATE TABLE IF NOT EXISTS series (
            series_id INTEGER NOT NULL,
            patient_id VARCHAR NOT NULL,
            device_id VARCHAR NOT NULL,
            kind UTINYINT NOT NULL);
        CREATE TABLE IF NOT EXISTS readings (
            series_id INTEGER NOT NULL,
            ts TIMESTAMP NOT NULL,
            value DOUBLE NOT NULL,
            commit_id BIGINT NOT NULL,
            seq UBIGINT NOT NULL);
        """;
}
