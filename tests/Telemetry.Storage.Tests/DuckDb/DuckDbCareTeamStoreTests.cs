using Telemetry.Storage.DuckDb;

namespace Telemetry.Storage.Tests.DuckDb;

public sealed class DuckDbCareTeamStoreTests : IDisposable
{
    private readonly TemporaryDirectory _directory = new();
    private readonly DuckDbDatabase _database;
    private readonly DuckDbCareTeamStore _store;

    public DuckDbCareTeamStoreTests()
    {
        _database = new DuckDbDatabase(_directory.Options);
        _store = new DuckDbCareTeamStore(_database);
    }

    public void Dispose()
    {
        _database.Dispose();
        _directory.Dispose();
    }

    [Fact]
    public async Task A_team_is_replaced_whole_and_an_empty_list_removes_it()
    {
        await _store.SetAsync("ward-1", ["p-1", "p-2", "p-2"]);
        await _store.SetAsync("ward-2", ["p-2"]);
        await _store.SetAsync("ward-1", ["p-3"]);
        await _store.SetAsync("ward-2", []);

        var teams = await _store.ReadAllAsync();

        var ward = Assert.Single(teams);
        Assert.Equal("ward-1", ward.Key);
        Assert.Equal(["p-3"], ward.Value);
    }
}
