using Telemetry.Ingest.Pipeline;

namespace Telemetry.Api.Cluster;

/// <summary>
/// Watches the cluster's membership for servers leaving it (shutting down, or declared dead): the patient grains they
/// held come back on the others, and with a raw store that shows a commit a while after answering it, a grain that
/// comes back may rebuild before the store shows what it had applied lately. Each departure has this server's commit
/// pipeline settle its own recent commits once the store shows them (<see cref="CommitPipeline.ServerLeftCluster"/>).
/// </summary>
public sealed partial class ClusterDepartures(
    IClusterMembershipService membership,
    ILocalSiloDetails localSilo,
    CommitPipeline pipeline,
    ILogger<ClusterDepartures> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // Servers that had left before this one started are no news.
        var known = membership.CurrentSnapshot.Members.ToDictionary(member => member.Key, member => member.Value.Status);
        try
        {
            await foreach (var snapshot in membership.MembershipUpdates.WithCancellation(stoppingToken))
            {
                var left = false;
                foreach (var (silo, member) in snapshot.Members)
                {
                    var before = known.GetValueOrDefault(silo, SiloStatus.None);
                    known[silo] = member.Status;

                    // Once as a server starts to shut down, and again once it is dead: its grains may come back in between.
                    if (!silo.Equals(localSilo.SiloAddress) && member.Status != before
                        && (member.Status == SiloStatus.Dead || (member.Status is SiloStatus.ShuttingDown or SiloStatus.Stopping && !IsLeaving(before))))
                    {
                        LogServerLeft(logger, silo.ToString(), member.Status.ToString());
                        left = true;
                    }
                }

                if (left)
                {
                    pipeline.ServerLeftCluster();
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // The server is stopping.
        }
    }

    private static bool IsLeaving(SiloStatus status) => status is SiloStatus.ShuttingDown or SiloStatus.Stopping or SiloStatus.Dead;

    [LoggerMessage(EventId = 3401, Level = LogLevel.Information, Message = "Server {Silo} is leaving the cluster ({Status})")]
    private static partial void LogServerLeft(ILogger logger, string silo, string status);
}
