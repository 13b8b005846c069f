using Telemetry.Storage.DuckDb;

namespace Telemetry.Storage.Tests.DuckDb;

/// <summary>The patient directory lists registered patients with those in care teams or with alert rules, once each, in pages.</summary>
public sealed class DuckDbPatientDirectoryTests : IDisposable
{
    private readonly TemporaryDirectory _directory = new();
    private readonly DuckDbDatabase _database;
    private readonly DuckDbPatientDirectory _patients;

    public DuckDbPatientDirectoryTests()
    {
        _database = new DuckDbDatabase(_directory.Options);
        _patients = new DuckDbPatientDirectory(_database);
    }

    public void Dispose()
    {
        _database.Dispose();
        _directory.Dispose();
    }


    [Fact]
    public async Task Registered_care_team_and_watched_patients_are_listed_once_in_id_order_page_by_page()
    {
        await _patients.RegisterAsync("p-3");
        await _patients.RegisterAsync("p-3");
        await _patients.RegisterAsync("p-1");
        await new DuckDbCareTeamStore(_database).SetAsync("ward-1", ["p-2", "p-3"]);
        await new DuckDbAlertStore(_database).SetWatchedAsync("p-4", watched: true);

        Assert.Equal(["p-1", "p-2", "p-3", "p-4"], await _patients.ListAsync(10));
        Assert.Equal(["p-1", "p-2"], await _patients.ListAsync(2));
        Assert.Equal(["p-3", "p-4"], await _patients.ListAsync(2, after: "p-2"));
        Assert.Empty(await _patients.ListAsync(2, after: "p-4"));

        // Known as listed: registered, in a care team, or watched; and no other.
        foreach (var known in new[] { "p-1", "p-2", "p-3", "p-4" })
        {
            Assert.True(await _patients.ContainsAsync(known), known);
        }

        Assert.False(await _patients.ContainsAsync("p-5"));
        Assert.False(await _patients.ContainsAsync("p-"));
    }

    [Fact]
    public async Task A_file_from_before_the_directory_lists_the_patients_it_holds_readings_of()
    {
        using (var connection = _database.OpenConnection())
        using (var command = connection.CreateCommand())
        {
            // As a file written before the directory existed: readings, and no patients table.
            command.CommandText = "DROP TABLE patients";
            command.ExecuteNonQuery();
        }

        using (var store = new DuckDbRawSeriesStore(_database))
        {
            store.Commit(Batches.Of("old-watch", "p-old", 1, new Core.Readings.VitalReading(Core.Vitals.VitalKind.HeartRate, Batches.T0, 70)));
        }

        _database.Dispose();
        using var reopened = new DuckDbDatabase(_directory.Options);

        Assert.Equal(["p-old"], await new DuckDbPatientDirectory(reopened).ListAsync(10));
    }
}
