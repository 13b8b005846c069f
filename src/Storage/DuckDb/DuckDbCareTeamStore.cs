using DuckDB.NET.Data;
using Telemetry.Core.Storage;

namespace Telemetry.Storage.DuckDb;

/// <summary>Care teams' patients in the embedded DuckDB file; a team is replaced whole, in one transaction.</summary>
public sealed class DuckDbCareTeamStore(DuckDbDatabase database) : ICareTeamStore
{
    /// <summary>The file is this server's alone: no one else changes it.</summary>
    public event Action? ChangedElsewhere
    {
        add { }
        remove { }
    }

    public Task<IReadOnlyDictionary<string, IReadOnlySet<string>>> ReadAllAsync(CancellationToken cancellationToken = default) =>
        Task.Run<IReadOnlyDictionary<string, IReadOnlySet<string>>>(() =>
        {
            using var connection = database.OpenConnection();
            using var command = connection.CreateCommand();
            command.CommandText = "SELECT team_id, patient_id FROM care_team_members";
            using var reader = command.ExecuteReader();
            var teams = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
            while (reader.Read())
            {
                var team = reader.GetString(0);
                if (!teams.TryGetValue(team, out var patients))
                {
                    teams[team] = patients = new HashSet<string>(StringComparer.Ordinal);
                }

                patients.Add(reader.GetString(1));
            }

            return teams.ToDictionary(entry => entry.Key, entry => (IReadOnlySet<string>)entry.Value, StringComparer.Ordinal);
        }, cancellationToken);

    public Task SetAsync(string teamId, IReadOnlyCollection<string> patientIds, CancellationToken cancellationToken = default) =>
        Task.Run(() =>
        {
            using var connection = database.OpenConnection();
            using var transaction = connection.BeginTransaction();
            using (var delete = connection.CreateCommand())
            {
                delete.CommandText = "DELETE FROM care_team_members WHERE team_id = $1";
                delete.Parameters.Add(new DuckDBParameter(teamId));
                delete.ExecuteNonQuery();
            }

            using (var appender = connection.CreateAppender("care_team_members"))
            {
                foreach (var patientId in patientIds.Distinct(StringComparer.Ordinal))
                {
                    appender.CreateRow().AppendValue(teamId).AppendValue(patientId).EndRow();
                }
            }

            transaction.Commit();
        }, cancellationToken);
}
