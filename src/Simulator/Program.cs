using System.Diagnostics;
using Telemetry.Simulator;

if (args is ["--help"] or ["-h"])
{
    Console.WriteLine(SimulatorOptions.Usage);
    return 0;
}

SimulatorOptions options;
try
{
    options = SimulatorOptions.Parse(args);
}
catch (Exception exception) when (exception is ArgumentException or FormatException)
{
    Console.Error.WriteLine(exception.Message);
    Console.Error.WriteLine(SimulatorOptions.Usage);
    return 2;
}

using var stop = new CancellationTokenSource(options.Duration);
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    stop.Cancel();
};

var statistics = new FleetStatistics();
var fleet = new Fleet(options, statistics);
var wearables = await fleet.ProvisionAsync(CancellationToken.None);
Console.WriteLine($"provisioned {wearables.Count} devices ({wearables[0].DeviceId} ... for patients {wearables[0].PatientId} ...); " +
    $"sending {options.Rate:0.##} readings/s each in batches of {options.Batch} over {options.Protocol} for {options.Duration.TotalSeconds:0} s");

var started = Stopwatch.GetTimestamp();
var ledgers = wearables.Select(wearable => new DeviceLedger(wearable.DeviceId, wearable.PatientId)).ToList();
var runs = wearables.Select((wearable, i) => fleet.RunAsync(wearable, ledgers[i], stop.Token)).ToList();
var all = Task.WhenAll(runs);
var lastAcked = 0L;
var lastReport = Stopwatch.GetTimestamp();
while (!all.IsCompleted)
{
    await Task.WhenAny(all, Task.Delay(TimeSpan.FromSeconds(5)));
    var acked = statistics.ReadingsAcked;
    var seconds = Stopwatch.GetElapsedTime(lastReport).TotalSeconds;
    lastReport = Stopwatch.GetTimestamp();
    var (p50, p99) = statistics.DrainLatencies();
    var alerts = string.Empty;
    if (options.AlertProbeSeconds > 0)
    {
        var (alertP50, alertP99) = statistics.DrainAlertLatencies();
        alerts = $"  alert p50 {alertP50,6:0.0} ms  p99 {alertP99,6:0.0} ms";
    }

    Console.WriteLine($"{Stopwatch.GetElapsedTime(started).TotalSeconds,6:0}s  sent {statistics.ReadingsSent,10:N0}  acked {acked,10:N0}  " +
        $"{(acked - lastAcked) / seconds,10:N0} readings/s  ack p50 {p50,6:0.0} ms  p99 {p99,6:0.0} ms{alerts}");
    lastAcked = acked;
}

try
{
    await all;
}
catch (Exception exception)
{
    Console.Error.WriteLine($"a device failed: {exception.Message}");
}

Console.WriteLine($"done: sent {statistics.ReadingsSent:N0} readings in {statistics.BatchesSent:N0} batches; " +
    $"acked {statistics.ReadingsAcked:N0} readings in {statistics.BatchesAcked:N0} batches; refused {statistics.BatchesRefused:N0} batches; " +
    $"{statistics.Unanswered:N0} sends without an answer, sent again; {statistics.Reconnects:N0} reconnects");
var verified = !options.Verify || await Verification.CompareAsync(options, ledgers, CancellationToken.None);
return verified && statistics.BatchesRefused == 0 && statistics.BatchesAcked == statistics.BatchesSent ? 0 : 1;
