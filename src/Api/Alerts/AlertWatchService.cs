using Orleans;
using Telemetry.Core.Grains;
using Telemetry.Core.Storage;

namespace Telemetry.Api.Alerts;

/// <summary>
/// At start, activates every patient with alert rules, so their clocks run again: a device that went silent during a
/// restart still raises its no-data alert, and escalations and snoozes fire on time with no reading to wake them. In a
/// cluster the same is done when a server leaves it (<see cref="WakeWatchedAsync"/>): the alert clocks of the patients
/// it held ran on its timers, and nothing else would call those grains back to life on the others.
/// </summary>
public sealed partial class AlertWatchService(IAlertStore store, IGrainFactory grains, ILogger<AlertWatchService> logger) : BackgroundService
{
    private const int Parallelism = 16;

    protected override Task ExecuteAsync(CancellationToken stoppingToken) => WakeWatchedAsync(stoppingToken);

    /// <summary>Activates every patient with alert rules (one already active only answers).</summary>
    public async Task WakeWatchedAsync(CancellationToken stoppingToken)
    {
        var patients = await store.WatchedPatientsAsync(stoppingToken);
        await Parallel.ForEachAsync(
            patients,
            new ParallelOptions { MaxDegreeOfParallelism = Parallelism, CancellationToken = stoppingToken },
            async (patientId, _) =>
            {
                try
                {
                    await grains.GetGrain<IPatientGrain>(patientId).WakeAsync();
                }
                catch (Exception exception)
                {
                    LogWakeFailed(logger, exception, patientId);
                }
            });
        LogWoken(logger, patients.Count);
    }

    [LoggerMessage(EventId = 3101, Level = LogLevel.Information, Message = "Alert clocks running again for {Patients} patients")]
    private static partial void LogWoken(ILogger logger, int patients);

    [LoggerMessage(EventId = 3102, Level = LogLevel.Warning, Message = "Patient {PatientId} could not be activated for its alerts; its next reading activates it")]
    private static partial void LogWakeFailed(ILogger logger, Exception exception, string patientId);
}
