namespace Telemetry.Core.Storage;

/// <summary>Which patients each care team looks after. Clinicians belong to teams by their token's <c>care_team</c> claims.</summary>
public interface ICareTeamStore
{
    /// <summary>Every team's patients.</summary>
    Task<IReadOnlyDictionary<string, IReadOnlySet<string>>> ReadAllAsync(CancellationToken cancellationToken = default);

    /// <summary>Makes <paramref name="patientIds"/> the whole of <paramref name="teamId"/>'s patients (none removes the team).</summary>
    Task SetAsync(string teamId, IReadOnlyCollection<string> patientIds, CancellationToken cancellationToken = default);

    /// <summary>Raised when another server sharing the store may have changed a team, so what was read before may be stale.</summary>
    event Action? ChangedElsewhere;
}
