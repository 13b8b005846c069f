using System.Globalization;
using InfluxDB.Client;
using Microsoft.Extensions.Logging;

namespace Telemetry.Storage.Influx;

/// <summary>
/// A time-series server the raw series (and, if so configured, the rollups) live in: written through InfluxDB.Client's
/// v2 write API, read through Flux (InfluxDB) or the export API (VictoriaMetrics).
/// </summary>
public sealed class SeriesBackend : IDisposable
{
    private readonly InfluxDBClient _client;

    private SeriesBackend(InfluxDBClient client, SeriesServerOptions options, string bucket, string org, Func<InfluxDBClient, ISeriesReader> reader, string description, bool versionedRollups, TimeProvider timeProvider, ILogger logger)
    {
        _client = client;
        VersionedRollups = versionedRollups;
        ReadableAfter = options.ReadableAfter;
        if (options.Gzip)
        {
            client.EnableGzip();
        }

        Writer = new SeriesWriter(client.GetWriteApiAsync(), options, bucket, org, timeProvider, logger);
        Reader = reader(client);
        Description = description;
    }

    /// <summary>True when the server answers its ping (<c>/ping</c>) within <paramref name="within"/>.</summary>
    public async Task<bool> AnswersAsync(TimeSpan within, CancellationToken cancellationToken)
    {
        try
        {
            return await _client.PingAsync().WaitAsync(within, cancellationToken);
        }
        catch (Exception) when (!cancellationToken.IsCancellationRequested)
        {
            return false;
        }
    }

    /// <summary>
    /// What in the server's own settings would lose or double readings this server acknowledges, readings being up to
    /// <paramref name="backfillHorizon"/> old: an InfluxDB bucket that keeps points for less than that and a day (a
    /// commit holding an older reading is refused whole); a VictoriaMetrics that keeps samples for less (it answers 204
    /// and drops them), or that deduplicates not to the millisecond (a reading written twice kept twice, or a device's
    /// readings closer together than its interval dropped); and a server that keeps points for less than the rollups in
    /// it are to be kept (<paramref name="rollupsKept"/>: null when they are elsewhere, <see cref="TimeSpan.MaxValue"/>
    /// for good, which VictoriaMetrics' longest period, 100y, stands for). Empty when nothing; null when the settings could
    /// not be read (the server away, or its token or setup not letting them be read).
    /// </summary>
    public Task<IReadOnlyList<string>?> SettingsProblemsAsync(TimeSpan backfillHorizon, TimeSpan? rollupsKept, CancellationToken cancellationToken) =>
        Reader.SettingsProblemsAsync(backfillHorizon, rollupsKept, cancellationToken);

    /// <summary>How long the rollups are to be kept, as the settings problems name it.</summary>
    internal static string Describe(TimeSpan rollupsKept) =>
        rollupsKept == TimeSpan.MaxValue ? "for good" : string.Create(CultureInfo.InvariantCulture, $"{rollupsKept.TotalDays:0.##} days");

    /// <summary>Where the series are, for health reports and logs (no secrets).</summary>
    public string Description { get; }

    internal SeriesWriter Writer { get; }

    /// <summary>How long after a write the server may take to show it (<see cref="SeriesServerOptions.ReadableAfter"/>).</summary>
    public TimeSpan ReadableAfter { get; }

    internal ISeriesReader Reader { get; }

    /// <summary>True when the server can be asked to show what it buffers (VictoriaMetrics).</summary>
    internal bool CanShowAnsweredWrites => Reader is VictoriaMetricsSeriesReader;

    /// <summary>True when a point written twice is not reliably replaced, so rollups are written by time of writing (see <see cref="InfluxLayout.AppendRollup"/>).</summary>
    internal bool VersionedRollups { get; }

    public static SeriesBackend ForInfluxDb(InfluxOptions options, TimeProvider timeProvider, ILogger logger)
    {
        var client = new InfluxDBClient(new InfluxDBClientOptions(options.Url)
        {
            Token = options.ResolveToken(),
            Org = options.Org,
            Bucket = options.Bucket,
            Timeout = options.RequestTimeout,
        });
        return new SeriesBackend(client, options, options.Bucket, options.Org, client => new FluxSeriesReader(client, options.Bucket, options.Org, timeProvider),
            $"InfluxDB bucket {options.Bucket} at {options.Url}", versionedRollups: false, timeProvider, logger);
    }

    public static SeriesBackend ForVictoriaMetrics(VictoriaMetricsOptions options, TimeProvider timeProvider, ILogger logger)
    {
        // VictoriaMetrics takes InfluxDB's write API as it is; the token, bucket and organisation are not used there (the
        // client insists on a token).
        var client = new InfluxDBClient(new InfluxDBClientOptions(options.Url)
        {
            Token = "unused",
            Org = "telemetry",
            Bucket = "vitals",
            Timeout = options.RequestTimeout,
        });
        return new SeriesBackend(client, options, "vitals", "telemetry", _ => new VictoriaMetricsSeriesReader(options, timeProvider),
            $"VictoriaMetrics at {options.Url}", versionedRollups: true, timeProvider, logger);
    }

    public void Dispose()
    {
        Reader.Dispose();
        _client.Dispose();
    }
}
