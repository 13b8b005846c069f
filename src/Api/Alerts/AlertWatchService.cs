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

    protected override Task ExecuteAsync(CancellationToken stoppingToken) => WakeWatchedAsync(stoppingToken, attempts: 3);

    /// <summary>
    /// Activates every patient with alert rules (one already active only answers); those that could not be are tried
    /// again, up to <paramref name="attempts"/> times in all, a few seconds apart (a server that just died leaves calls
    /// failing for a moment while its grains' places are given up). Never throws.
    /// </summary>
    public async Task WakeWatchedAsync(CancellationToken stoppingToken, int attempts = 1)
    {
        IReadOnlyCollection<string>? left = null;
        for (var attempt = 1; attempt <= attempts && !stoppingToken.IsCancellationRequested; attempt++)
        {
            if (attempt > 1)
            {
                await Task.Delay(TimeSpan.FromSeconds(5 * (attempt - 1)), stoppingToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }

            try
            {
                var patients = left ?? await store.WatchedPatientsAsync(stoppingToken);
                var failed = new System.Collections.Concurrent.ConcurrentBag<string>();
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
                            failed.Add(patientId);
                            if (attempt == attempts)
                            {
                                LogWakeFailed(logger, exception, patientId);
                            }
                        }
                    });
                LogWoken(logger, patients.Count - failed.Count);
                if (failed.IsEmpty)
                {
                    return;
                }

                left = [.. failed];
            }
            catch (Exception exception) when (!stoppingToken.IsCancellationRequested)
            {
                LogListFailed(logger, exception, attempt, attempts);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    [LoggerMessage(EventId = 3101, Level = LogLevel.Information, Message = "Alert clocks running again for {Patients} patients")]
    private static partial void LogWoken(ILogger logger, int patients);

    [LoggerMessage(EventId = 3102, Level = LogLevel.Warning, Message = "Patient {PatientId} could not be activated for its alerts; its next reading, or the next server to start, activates it")]
    private static partial void LogWakeFailed(ILogger logger, Exception exception, string patientId);

    [LoggerMessage(EventId = 3103, Level = LogLevel.Error, Message = "Reading the patients with alert rules failed (attempt {Attempt} of {Attempts}); their alert clocks run again with their next reading")]
    private static partial void LogListFailed(ILogger logger, Exception exception, int attempt, int attempts);
}
