using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace Telemetry.EndToEnd.Tests;

/// <summary>
/// One server holding three days of a patient's readings, uploaded once for every class in the <c>seeded</c>
/// collection: heart rate every 5 minutes, SpO2 every 10, blood pressure hourly, steps hourly, and each morning a
/// weight, a night's sleep and a resting heart rate. The tests compute what they expect from <see cref="Readings"/>.
/// </summary>
public sealed class SeededServer : IAsyncLifetime
{
    public const string PatientId = "p-seeded";
    public const string DeviceId = "seeded-watch";

    public TelemetryServer Server { get; private set; } = null!;

    /// <summary>The first hour of the three days (UTC, on the hour).</summary>
    public DateTimeOffset Start { get; private set; }

    public List<(string Kind, DateTimeOffset Time, double Value)> Readings { get; } = [];

    public async Task InitializeAsync()
    {
        Server = await TelemetryServer.StartNewAsync();
        var now = Devices.RecentMinute(0);
        Start = new DateTimeOffset(now.Year, now.Month, now.Day, now.Hour, 0, 0, TimeSpan.Zero).AddDays(-3);
        for (var minute = 0; minute < 3 * 24 * 60; minute += 5)
        {
            var at = Start.AddMinutes(minute);
            Readings.Add(("heart_rate", at, 60 + (minute / 5 % 30)));
            if (minute % 10 == 0)
            {
                Readings.Add(("spo2", at, 95 + (minute / 10 % 4)));
            }

            if (minute % 60 == 0)
            {
                var hour = minute / 60;
                Readings.Add(("systolic_bp", at, 120 + (hour % 10)));
                Readings.Add(("diastolic_bp", at, 80 + (hour % 5)));
                Readings.Add(("steps", at, 300 + (hour % 3 * 100)));
                if (at.Hour == 7)
                {
                    Readings.Add(("body_weight", at, 70 + (hour / 24 * 0.5)));
                    Readings.Add(("body_weight", at.AddMinutes(1), 71 + (hour / 24 * 0.5)));
                    Readings.Add(("sleep_duration", at, 7 + (hour / 24 * 0.25)));
                    Readings.Add(("resting_heart_rate", at, 55 + (hour / 24)));
                }
            }
        }

        var token = await Server.ProvisionAsync(DeviceId, PatientId);
        var lines = Readings.Select(r => string.Create(CultureInfo.InvariantCulture,
            $$"""{"kind":"{{r.Kind}}","time":"{{r.Time.UtcDateTime:yyyy-MM-ddTHH:mm:ssZ}}","value":{{r.Value}}}"""));
        using var request = new HttpRequestMessage(HttpMethod.Post, $"/api/devices/{DeviceId}/readings")
        {
            Content = new ByteArrayContent(Encoding.UTF8.GetBytes(string.Join('\n', lines))),
        };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/x-ndjson");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        using var response = await Server.Http.SendAsync(request);
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, body);
        Assert.Equal(Readings.Count, JsonDocument.Parse(body).RootElement.GetProperty("accepted").GetInt32());

        // An ack means committed; the patient's grain folds the readings into rollups a moment later.
        foreach (var kind in Readings.Select(r => r.Kind).Distinct())
        {
            var expected = Readings.Count(r => r.Kind == kind);
            var trend = await Server.TrendWhenAsync(PatientId, kind, Start.AddDays(-1), Start.AddDays(4), "1h", t => t.TotalCount == expected);
            Assert.Equal(expected, trend.TotalCount);
        }
    }

    public async Task DisposeAsync() => await Server.DisposeAsync();

    /// <summary>The seeded readings of <paramref name="kind"/> in [<paramref name="from"/>, <paramref name="to"/>).</summary>
    public List<double> Values(string kind, DateTimeOffset from, DateTimeOffset to) =>
        [.. Readings.Where(r => r.Kind == kind && r.Time >= from && r.Time < to).Select(r => r.Value)];
}

[CollectionDefinition("seeded")]
public sealed class SeededCollection : ICollectionFixture<SeededServer>;
