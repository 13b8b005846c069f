using DuckDB.NET.Data;
using Telemetry.Core.Storage;

namespace Telemetry.Storage.DuckDb;

/// <summary>
/// The patient directory in the embedded DuckDB file: patients registered when a device is provisioned for them, with
/// those in a care team or with alert rules (so patients from before the directory existed are listed too).
/// </summary>
public sealed class DuckDbPatientDirectory(DuckDbDatabase database) : IPatientDirectory
{
    /// <summary>
    /// Creates the directory; a file from before it existed gets every patient it holds readings or alerts of, once
    /// (a scan of the series, paid on the first start after the upgrade only).
    /// </summary>
    internal static void CreateSchema(DuckDBConnection connection)
    {
        using var exists = connection.CreateCommand();
        exists.CommandText = "SELECT count(*) FROM information_schema.tables WHERE table_name = 'patients'";
        if (Convert.ToInt64(exists.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture) > 0)
        {
            return;
        }

        using var transaction = connection.BeginTransaction();
        using (var create = connection.CreateCommand())
        {
            create.CommandText = "CREATE TABLE patients (patient_id VARCHAR PRIMARY KEY)";
            create.ExecuteNonQuery();
        }

        using (var fill = connection.CreateCommand())
        {
            fill.CommandText = "INSERT INTO patients SELECT DISTINCT patient_id FROM all_series UNION SELECT DISTINCT patient_id FROM alerts";
            fill.ExecuteNonQuery();
        }

        transaction.Commit();
    }

    public Task RegisterAsync(string patientId, CancellationToken cancellationToken = default) =>
        Task.Run(() =>
        {
            using var connection = database.OpenConnection();
            using var command = connection.CreateCommand();
            command.CommandText = "INSERT INTO patients (patient_id) VALUES ($1) ON CONFLICT DO NOTHING";
            command.Parameters.Add(new DuckDBParameter(patientId));
            command.ExecuteNonQuery();
        }, cancellationToken);

    public Task<bool> ContainsAsync(string patientId, CancellationToken cancellationToken = default) =>
        Task.Run(() =>
        {
            using var connection = database.OpenConnection();
            using var command = connection.CreateCommand();
            command.CommandText = """
                SELECT EXISTS (SELECT 1 FROM patients WHERE patient_id = $1)
                    OR EXISTS (SELECT 1 FROM care_team_members WHERE patient_id = $1)
                    OR EXISTS (SELECT 1 FROM alert_patients WHERE patient_id = $1)
                """;
            command.Parameters.Add(new DuckDBParameter(patientId));
            return command.ExecuteScalar() is true;
        }, cancellationToken);

    public Task<IReadOnlyList<string>> ListAsync(int limit, string? after = null, CancellationToken cancellationToken = default) =>
        Task.Run<IReadOnlyList<string>>(() =>
        {
            using var connection = database.OpenConnection();
            using var command = connection.CreateCommand();
            command.CommandText = """
                SELECT patient_id FROM (
                    SELECT patient_id FROM patients
                    UNION SELECT patient_id FROM care_team_members
                    UNION SELECT patient_id FROM alert_patients)
                WHERE $1 IS NULL OR patient_id > $1
                ORDER BY patient_id
                LIMIT $2
                """;
            command.Parameters.Add(new DuckDBParameter((object?)after ?? DBNull.Value));
            command.Parameters.Add(new DuckDBParameter(limit));
            using var reader = command.ExecuteReader();
            var patients = new List<string>();
            while (reader.Read())
            {
                patients.Add(reader.GetString(0));
            }

            return patients;
        }, cancellationToken);
}
