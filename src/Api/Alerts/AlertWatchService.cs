using Orleans;
using Telemetry.Core.Grains;
using Telemetry.Core.Storage;

namespace Telemetry.Api.Alerts;

/// <summary>
/// At start, activates every patient with alert rules, so their clocks run again: a device that went silent during a
/// restart still raises its no-data alert, and escalations and snoozes fire on time with no reading to wake them. In a
/// cluster the same is done when a server leaves it (<see cref="RequestWake"/>): the alert clocks of the patients
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

    // Wakes asked for (at start and by each server's death) and the count as of the loop's last listing of the patients;
    // whether the one loop runs.
    private int _requested;
    private int _listedAt;
    private int _running;

    // Tells a loop waiting between rounds that a wake was asked for: it lists the patients again at once.
    private readonly SemaphoreSlim _asked = new(0, 1);

    protected override Task ExecuteAsync(CancellationToken stoppingToken)
    {
        RequestWake(stoppingToken);
        return Task.CompletedTask;
    }

    /// <summary>
    /// Has every patient with alert rules woken (see <see cref="WakeWatchedAsync"/>), by the one loop: one already
    /// running lists the patients again at its next round rather than a second loop starting, so a server's deaths, one
    /// after another while a patient cannot be woken, keep one loop going, not one each. Returns at once.
    /// </summary>
    public void RequestWake(CancellationToken stoppingToken)
    {
        Interlocked.Increment(ref _requested);
        if (Interlocked.Exchange(ref _running, 1) == 0)
        {
            _ = Task.Run(() => RunWakesAsync(stoppingToken), CancellationToken.None);
            return;
        }

        try
        {
            _asked.Release();
        }
        catch (SemaphoreFullException)
        {
            // Told already.
        }
    }

    private async Task RunWakesAsync(CancellationToken stoppingToken)
    {
        while (true)
        {
            await WakeWatchedAsync(stoppingToken);

            // Both sides fence (an exchange here, an increment then an exchange in RequestWake): a request either sees
            // the loop stopped, and starts it, or is seen here.
            Interlocked.Exchange(ref _running, 0);

            // A request after the last listing may have found the loop running, and left it to this one.
            if (stoppingToken.IsCancellationRequested || Volatile.Read(ref _requested) == Volatile.Read(ref _listedAt) || Interlocked.Exchange(ref _running, 1) != 0)
            {
                return;
            }
        }
    }

    /// <summary>
    /// Activates every patient with alert rules (one already active only answers); those that could not be are tried
    /// again, 5 s later, then 10, up to a minute apart, until they are or the server stops: an activation reads the patient's days from the raw store, and a
    /// silent device's patient has nothing else to wake it while that store, or a dead server's grains' places, are
    /// away. Never throws.
    /// </summary>
    private async Task WakeWatchedAsync(CancellationToken stoppingToken)
    {
        IReadOnlyCollection<string>? left = null;
        for (var attempt = 1; !stoppingToken.IsCancellationRequested; attempt++)
        {
            if (attempt > 1)
            {
                // A wake asked for meanwhile (another server died) starts the rounds over, its patients listed at once.
                var delay = RetryStep * (attempt - 1) < MaxRetryDelay ? RetryStep * (attempt - 1) : MaxRetryDelay;
                try
                {
                    if (await _asked.WaitAsync(delay, stoppingToken))
                    {
                        attempt = 1;
                    }
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }

            try
            {
                // A wake asked for since the last listing (another server died meanwhile) needs them listed again.
                var requested = Volatile.Read(ref _requested);
                if (requested != Volatile.Read(ref _listedAt))
                {
                    left = null;
                }

                Volatile.Write(ref _listedAt, requested);
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
                            if (attempt == LoggedAttempt)
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
                LogListFailed(logger, exception, attempt);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    [LoggerMessage(EventId = 3501, Level = LogLevel.Information, Message = "Alert clocks running again for {Patients} patients")]
    private static partial void LogWoken(ILogger logger, int patients);

    [LoggerMessage(EventId = 3502, Level = LogLevel.Warning, Message = "Patient {PatientId} could not be activated for its alerts; trying again, up to a minute apart, until it is (or its next reading activates it)")]
    private static partial void LogWakeFailed(ILogger logger, Exception exception, string patientId);

    [LoggerMessage(EventId = 3503, Level = LogLevel.Error, Message = "Reading the patients with alert rules failed (attempt {Attempt}); trying again, up to a minute apart")]
    private static partial void LogListFailed(ILogger logger, Exception exception, int attempt);
}
