using Microsoft.Extensions.Logging;
using Telemetry.Core.Grains;
using Telemetry.Core.Readings;
using Telemetry.Core.Rollups;
using Telemetry.Core.Storage;
using Telemetry.Core.Vitals;

namespace Telemetry.Grains.Patients;

/// <summary>
/// A patient's live picture. Every reading it sees is already committed to the raw store, so all it holds is derived:
/// on activation it rebuilds the open day from the raw store, and a reading that arrives late for a closed window has
/// that window recomputed from the raw store.
/// </summary>
public sealed partial class PatientGrain(
    IRawSeriesStore rawStore,
    IRollupStore rollupStore,
    TimeProvider timeProvider,
    GrainInstruments instruments,
    ILogger<PatientGrain> logger) : Grain, IPatientGrain
{
    private readonly Dictionary<VitalKind, VitalWindows> _vitals = [];
    private readonly List<Rollup> _closed = [];
    private readonly HashSet<(VitalKind Kind, long MinuteStartMs)> _late = [];

    // What the activation rebuilt from the raw store: commits up to this id, readings from this time on.
    private long _rebuiltThroughCommit;
    private long _rebuiltFromMs = long.MaxValue;

    private string PatientId => this.GetPrimaryKeyString();

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        instruments.PatientActivated();
        var now = timeProvider.GetUtcNow().ToUnixTimeMilliseconds();
        var dayStart = Resolution.Day.WindowStart(now);
        var minutes = await rawStore.AggregateAsync(PatientId, dayStart, long.MaxValue, Resolution.Minute, cancellationToken);
        _rebuiltThroughCommit = minutes.HighestCommitId;
        _rebuiltFromMs = dayStart;
        foreach (var group in minutes.Windows.GroupBy(window => window.Kind))
        {
            var kind = group.Key;
            var ordered = group.Select(window => window.Window).OrderBy(window => window.StartMs).ToList();
            _vitals[kind] = VitalWindows.Rebuild(ordered, (resolution, window) => Close(kind, resolution, window));
        }

        // Rollups closed before a crash may not have reached the store; rewriting today's is cheap and makes sure.
        await FlushClosedAsync(cancellationToken);
        LogRebuilt(logger, PatientId, minutes.Windows.Count);
    }

    public override async Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        // Checkpoint the open windows, so trends stay complete while the patient is inactive. A later activation
        // rebuilds them from the raw store and replaces these.
        foreach (var (kind, windows) in _vitals)
        {
            foreach (var resolution in ResolutionExtensions.All)
            {
                if (windows.Open(resolution) is { } open)
                {
                    Close(kind, resolution, open);
                }
            }
        }

        await FlushClosedAsync(cancellationToken);
        instruments.PatientDeactivated();
    }

    public async Task ApplyAsync(PatientReadings readings)
    {
        // A commit the activation already read from the raw store is counted once: only its readings from before the
        // rebuilt range still need their (closed) windows recomputed.
        var rebuilt = readings.CommitId <= _rebuiltThroughCommit;
        foreach (var reading in readings.Readings)
        {
            if (rebuilt)
            {
                if (reading.TimestampMs < _rebuiltFromMs)
                {
                    _late.Add((reading.Kind, Resolution.Minute.WindowStart(reading.TimestampMs)));
                }

                continue;
            }

            if (!_vitals.TryGetValue(reading.Kind, out var windows))
            {
                windows = new VitalWindows();
                _vitals[reading.Kind] = windows;
            }

            var kind = reading.Kind;
            if (!windows.Add(reading.TimestampMs, reading.Value, (resolution, window) => Close(kind, resolution, window)))
            {
                _late.Add((kind, Resolution.Minute.WindowStart(reading.TimestampMs)));
            }
        }

        if (_late.Count > 0)
        {
            await RecomputeLateAsync();
        }

        await FlushClosedAsync(CancellationToken.None);
    }

    public Task<LiveSnapshot> GetLiveAsync()
    {
        var vitals = _vitals
            .Where(pair => pair.Value.LatestMs != long.MinValue)
            .OrderBy(pair => pair.Key)
            .Select(pair => new LiveVital(pair.Key, pair.Value.LatestValue, pair.Value.LatestMs, pair.Value.Minute))
            .ToArray();
        return Task.FromResult(new LiveSnapshot(PatientId, vitals));
    }

    public Task<RollupWindow?> GetOpenWindowAsync(VitalKind kind, Resolution resolution) =>
        Task.FromResult(_vitals.TryGetValue(kind, out var windows) ? windows.Open(resolution) : null);

    private void Close(VitalKind kind, Resolution resolution, RollupWindow window)
    {
        if (window.Count > 0)
        {
            _closed.Add(new Rollup(PatientId, kind, resolution, window));
        }
    }

    /// <summary>Recomputes, from the raw store, every closed window that late readings fell into.</summary>
    private async Task RecomputeLateAsync()
    {
        var touched = new HashSet<(VitalKind Kind, Resolution Resolution, long StartMs)>();
        foreach (var (kind, minuteStart) in _late)
        {
            _vitals.TryGetValue(kind, out var open);
            foreach (var resolution in ResolutionExtensions.All)
            {
                var start = resolution.WindowStart(minuteStart);
                if (open?.Open(resolution) is not { } current || current.StartMs != start)
                {
                    touched.Add((kind, resolution, start));
                }
            }
        }

        _late.Clear();
        foreach (var (kind, resolution, start) in touched)
        {
            var windows = await rawStore.AggregateAsync(PatientId, start, start + resolution.Milliseconds(), resolution);
            foreach (var window in windows.Windows)
            {
                if (window.Kind == kind)
                {
                    Close(kind, resolution, window.Window);
                }
            }
        }
    }

    private async Task FlushClosedAsync(CancellationToken cancellationToken)
    {
        if (_closed.Count == 0)
        {
            return;
        }

        var rollups = _closed.ToArray();
        _closed.Clear();
        await rollupStore.WriteAsync(rollups, cancellationToken);
    }

    [LoggerMessage(EventId = 2001, Level = LogLevel.Debug, Message = "Patient {PatientId} activated; rebuilt from {Windows} minute windows of the raw store")]
    private static partial void LogRebuilt(ILogger logger, string patientId, int windows);
}
