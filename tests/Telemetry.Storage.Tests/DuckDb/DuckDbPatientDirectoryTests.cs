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
    }
}
