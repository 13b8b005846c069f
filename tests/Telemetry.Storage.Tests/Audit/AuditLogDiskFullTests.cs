using Microsoft.Extensions.Logging.Abstractions;
using Telemetry.Storage.Audit;
using Telemetry.Storage.DuckDb;
using Telemetry.Testing;

namespace Telemetry.Storage.Tests.Audit;

/// <summary>
/// The audit log on a disk that fills up: a record that cannot be written fails its request and is not in the chain,
/// and once there is room again the chain goes on whole, each record in it once. The log sits on a small tmpfs of its own.
/// </summary>
public sealed class AuditLogDiskFullTests : IAsyncLifetime
{
    private SmallDisk _disk = null!;

    public async Task InitializeAsync() => _disk = await SmallDisk.MountAsync("256k");

    public async Task DisposeAsync() => await _disk.DisposeAsync();

    [Fact]
    public async Task A_record_the_full_disk_refused_is_not_in_the_chain_and_the_chain_goes_on_whole_after_it()
    {
        var options = Microsoft.Extensions.Options.Options.Create(new DuckDbOptions { Path = Path.Combine(_disk.Path, "telemetry.duckdb") });
        await using var log = new AuditLog(options, TimeProvider.System, NullLogger<AuditLog>.Instance);
        await log.WriteAsync("dr-a", "clinician", "p-1", "GET /api/patients/p-1/live", 200);

        // Fill the disk, then write until a record no longer fits in the file's last page.
        var filler = Path.Combine(_disk.Path, "filler");
        Fill(filler);
        var written = 1;
        IOException? refused = null;
        while (refused is null && written < 100)
        {
            try
            {
                await log.WriteAsync("dr-a", "clinician", "p-1", "GET /api/patients/p-1/live", 200);
                written++;
            }
            catch (IOException exception)
            {
                refused = exception;
            }
        }

        Assert.NotNull(refused);

        // Room again: the records after it follow the last one written, and every one is in the chain once.
        File.Delete(filler);
        for (var i = 0; i < 3; i++, written++)
        {
            await log.WriteAsync("dr-b", "clinician", "p-2", "GET /api/patients/p-2/live", 200);
        }

        var verified = log.Verify();
        Assert.True(verified.Intact, $"broken at {verified.File}:{verified.FirstBrokenLine}");
        Assert.Equal(written, verified.Records);
        Assert.Empty(verified.Torn);
        Assert.Equal(Enumerable.Range(1, written).Reverse().Select(seq => (long)seq), log.Query(null, null, null, null, 1_000).Select(record => record.Seq));
    }

    private static void Fill(string path)
    {
        using var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, bufferSize: 0);
        var block = new byte[4_096];
        try
        {
            while (true)
            {
                file.Write(block);
            }
        }
        catch (IOException)
        {
            // Full.
        }
    }
}
