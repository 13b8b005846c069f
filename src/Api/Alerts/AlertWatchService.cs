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

    // Between rounds of waking those that could not be woken: 5 s more each round, up to a minute.
    private static readonly TimeSpan RetryStep = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan MaxRetryDelay = TimeSpan.FromMinutes(1);

    // The round whose failures are logged one by one (later ones only count): a store away for long would fill the log.
    private const int LoggedAttempt = 3;

    protected override Task ExecuteAsync(CancellationToken stoppingToken) => WakeWatchedAsync(stoppingToken);

    /// <summary>
    /// Activates every patient with alert rules (one already active only answers); those that could not be are tried
    /// again, 5 s later, then 10, up to a minute apart, until they are or <paramref name="attempts"/> rounds have been
    /// made (by default, until the server stops): an activation reads the patient's days from the raw store, and a
    /// silent device's patient has nothing else to wake it while that store, or a dead server's grains' places, are
    /// away. Never throws.
    /// </summary>
    public async Task WakeWatchedAsync(CancellationToken stoppingToken, int attempts = int.MaxValue)
    {
        IReadOnlyCollection<string>? left = null;
        for (var attempt = 1; attempt <= attempts && !stoppingToken.IsCancellationRequested; attempt++)
        {
            if (attempt > 1)
            {
                var delay = RetryStep * (attempt - 1) < MaxRetryDelay ? RetryStep * (attempt - 1) : MaxRetryDelay;
                await Task.Delay(delay, stoppingToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
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
                            if (attempt == Math.Min(LoggedAttempt, attempts))
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

    [LoggerMessage(EventId = 3102, Level = LogLevel.Warning, Message = "Patient {PatientId} could not be activated for its alerts; trying again, up to a minute apart, until it is (or its next reading activates it)")]
    private static partial void LogWakeFailed(ILogger logger, Exception exception, string patientId);

    [LoggerMessage(EventId = 3103, Level = LogLevel.Error, Message = "Reading the patients with alert rules failed (attempt {Attempt} of {Attempts}); their alert clocks run again with their next reading")]
    private static partial void LogListFailed(ILogger logger, Exception exception, int attempt, int attempts);
}
