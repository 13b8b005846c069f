using Telemetry.Api.Alerts;
using Telemetry.Ingest.Pipeline;

namespace Telemetry.Api.Cluster;

/// <summary>
/// Watches the cluster's membership for servers leaving it (shutting down, or declared dead): the patient grains they
/// held come back on the others, and with a raw store that shows a commit a while after answering it, a grain that
/// comes back may rebuild before the store shows what it had applied lately. Each departure has this server's commit
/// pipeline settle its own recent commits once the store shows them (<see cref="CommitPipeline.ServerLeftCluster"/>).
/// Once a server is dead, the first of the active servers (by address) wakes every patient with alert rules, so the
/// alert clocks the dead server ran (no-data, escalation, snooze) run again on the others.
/// </summary>
public sealed partial class ClusterDepartures(
    IClusterMembershipService membership,
    ILocalSiloDetails localSilo,
    CommitPipeline pipeline,
    AlertWatchService alertWatch,
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
                var died = false;
                foreach (var (silo, member) in snapshot.Members)
                {
                    var before = known.GetValueOrDefault(silo, SiloStatus.None);
                    known[silo] = member.Status;
                    died |= !silo.Equals(localSilo.SiloAddress) && member.Status == SiloStatus.Dead && before != SiloStatus.Dead;

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

                if (died && FirstActive(snapshot) is { } waker && waker.Equals(localSilo.SiloAddress))
                {
                    LogWakingAlertClocks(logger);
                    alertWatch.RequestWake(stoppingToken);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // The server is stopping.
        }
    }

    /// <summary>The active server first by address: the one that wakes the patients, so that they are woken once.</summary>
    private static SiloAddress? FirstActive(ClusterMembershipSnapshot snapshot) =>
        snapshot.Members.Where(member => member.Value.Status == SiloStatus.Active).Select(member => member.Key).Order().FirstOrDefault();

    private static bool IsLeaving(SiloStatus status) => status is SiloStatus.ShuttingDown or SiloStatus.Stopping or SiloStatus.Dead;

    [LoggerMessage(EventId = 3402, Level = LogLevel.Information, Message = "A server died: waking every patient with alert rules so that their alert clocks run here")]
    private static partial void LogWakingAlertClocks(ILogger logger);

    [LoggerMessage(EventId = 3401, Level = LogLevel.Information, Message = "Server {Silo} is leaving the cluster ({Status})")]
    private static partial void LogServerLeft(ILogger logger, string silo, string status);
}
