using System.Net.Http.Headers;

namespace Telemetry.Simulator;

/// <summary>
/// Compares each device's ledger with the server: the raw readings stored for the device over the time its
/// acknowledged batches span must be exactly the readings acknowledged. Fewer means an acked reading was lost; more
/// means a resent one was stored twice.
/// </summary>
public static class Verification
{
    public static async Task<bool> CompareAsync(SimulatorOptions options, IReadOnlyList<DeviceLedger> ledgers, CancellationToken cancellationToken)
    {
        using var http = new HttpClient { BaseAddress = new Uri(options.Url) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", options.ResolveAdminToken());
        long acked = 0, stored = 0;
        var wrong = 0;
        foreach (var ledger in ledgers.Where(ledger => ledger.Readings > 0))
        {
            var from = DateTimeOffset.FromUnixTimeMilliseconds(ledger.FirstMs);
            var to = DateTimeOffset.FromUnixTimeMilliseconds(ledger.LastMs + 1);
            var kinds = string.Join(',', ledger.Kinds);
            var csv = await http.GetStringAsync(
                $"/api/patients/{ledger.PatientId}/export.csv?kind={kinds}&resolution=raw&from={Uri.EscapeDataString(from.ToString("O"))}&to={Uri.EscapeDataString(to.ToString("O"))}",
                cancellationToken);

            // time,kind,loinc,value,unit,device_id: this device's rows only (other runs may have used the patient too).
            var rows = csv.Split('\n', StringSplitOptions.RemoveEmptyEntries).Skip(1)
                .Count(line => line.EndsWith("," + ledger.DeviceId, StringComparison.Ordinal));
            acked += ledger.Readings;
            stored += rows;
            if (rows != ledger.Readings)
            {
                wrong++;
                Console.Error.WriteLine($"{ledger.DeviceId}: {ledger.Readings:N0} readings acknowledged, {rows:N0} stored ({(rows < ledger.Readings ? "lost" : "stored twice")}: {Math.Abs(rows - ledger.Readings):N0})");
            }
        }

        Console.WriteLine(wrong == 0
            ? $"verified: {acked:N0} readings acknowledged, {stored:N0} stored, none lost, none twice"
            : $"verification failed for {wrong} devices: {acked:N0} readings acknowledged, {stored:N0} stored");
        return wrong == 0;
    }
}
