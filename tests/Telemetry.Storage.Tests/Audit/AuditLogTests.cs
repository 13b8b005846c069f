using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Telemetry.Storage.Audit;
using Telemetry.Storage.Tests.DuckDb;

namespace Telemetry.Storage.Tests.Audit;

/// <summary>
/// The audit log keeps one file per UTC day, one hash chain across them all: reads go newest first and stop as soon as
/// they have enough, a restart continues the chain, and changing, removing or tearing any record is found.
/// </summary>
public sealed class AuditLogTests : IAsyncLifetime
{
    private static readonly DateTimeOffset Start = new(2026, 11, 28, 22, 0, 0, TimeSpan.Zero);

    private readonly TemporaryDirectory _directory = new();
    private readonly FakeTimeProvider _time = new(Start);
    private AuditLog _log = null!;

    public Task InitializeAsync()
    {
        _log = Open();
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _log.DisposeAsync();
        _directory.Dispose();
    }

    [Fact]
    public async Task Records_go_into_one_file_per_day_with_one_chain_across_them()
    {
        await WriteDaysAsync(3, perDay: 4);

        Assert.Equal(["audit-2026-11-28.log", "audit-2026-11-29.log", "audit-2026-11-30.log"], Files());
        var verified = _log.Verify();
        Assert.True(verified.Intact);
        Assert.Equal(12, verified.Records);

        var newest = _log.Query(null, null, null, null, 6);
        Assert.Equal([12L, 11, 10, 9, 8, 7], newest.Select(record => record.Seq));
        Assert.Equal(newest[1].Hash, newest[0].Previous);
    }

    [Fact]
    public async Task A_query_filters_by_patient_actor_and_time_newest_first()
    {
        await WriteDaysAsync(3, perDay: 4);

        var ofPatient = _log.Query("p-1", null, null, null, 100);
        Assert.All(ofPatient, record => Assert.Equal("p-1", record.PatientId));
        Assert.Equal(6, ofPatient.Count);
        Assert.True(ofPatient.Zip(ofPatient.Skip(1)).All(pair => pair.First.Seq > pair.Second.Seq));

        var secondDay = _log.Query(null, "dr-a", new DateTimeOffset(2026, 11, 29, 0, 0, 0, TimeSpan.Zero), new DateTimeOffset(2026, 11, 30, 0, 0, 0, TimeSpan.Zero), 100);
        Assert.Equal([7L, 5], secondDay.Select(record => record.Seq));
    }

    [Fact]
    public async Task A_reopened_log_continues_the_chain_in_todays_file()
    {
        await WriteDaysAsync(2, perDay: 2);
        await _log.DisposeAsync();
        _log = Open();

        var next = await _log.WriteAsync("dr-b", "clinician", "p-2", "GET /api/patients/p-2/live", 200);

        Assert.Equal(5, next.Seq);
        Assert.Equal(2, Files().Length);
        Assert.True(_log.Verify().Intact);
    }

    [Fact]
    public async Task Altering_a_record_in_an_older_file_breaks_the_chain_there()
    {
        await WriteDaysAsync(3, perDay: 3);
        var path = Path.Combine(_directory.Path, "audit-2026-11-29.log");
        var lines = File.ReadAllLines(path);
        lines[1] = lines[1].Replace("\"status\":200", "\"status\":404", StringComparison.Ordinal);
        File.WriteAllLines(path, lines);

        var verified = _log.Verify();

        Assert.False(verified.Intact);
        Assert.Equal("audit-2026-11-29.log", verified.File);
        Assert.Equal(2, verified.FirstBrokenLine);
        Assert.Equal(4, verified.Records);
    }

    [Fact]
    public async Task Removing_a_days_file_breaks_the_chain_where_it_was()
    {
        await WriteDaysAsync(3, perDay: 2);
        File.Delete(Path.Combine(_directory.Path, "audit-2026-11-29.log"));

        var verified = _log.Verify();

        Assert.False(verified.Intact);
        Assert.Equal("audit-2026-11-30.log", verified.File);
        Assert.Equal(1, verified.FirstBrokenLine);
    }

    [Fact]
    public async Task Archiving_the_oldest_days_files_leaves_the_rest_verifiable_from_the_hash_declared_archived_through()
    {
        await WriteDaysAsync(3, perDay: 4);
        var before = _log.Verify();
        var lastArchived = Assert.Single(_log.Query(null, null, null, null, 9), record => record.Seq == 4);

        // Removed with nothing declared, the first day is a break, as records removed anywhere else are.
        File.Move(Path.Combine(_directory.Path, "audit-2026-11-28.log"), Path.Combine(_directory.Path, "audit-2026-11-28.log.archived"));
        var undeclared = _log.Verify();
        var archivedLine = File.ReadLines(Path.Combine(_directory.Path, "audit-2026-11-28.log.archived")).Last();
        File.WriteAllText(Path.Combine(_directory.Path, AuditLog.AnchorFileName), archivedLine.Replace("\"seq\":4", "\"seq\":3", StringComparison.Ordinal) + "\n");
        var misdeclared = _log.Verify();
        File.WriteAllText(Path.Combine(_directory.Path, AuditLog.AnchorFileName), archivedLine + "\n");
        var verified = _log.Verify();

        Assert.Equal((true, 1L, AuditLog.Genesis), (before.Intact, before.FirstSeq, before.AnchorHash));
        Assert.Equal((false, "audit-2026-11-29.log", 1L), (undeclared.Intact, undeclared.File, undeclared.FirstBrokenLine));
        Assert.False(misdeclared.Intact);
        Assert.Equal((true, 8L, 5L, lastArchived.Hash), (verified.Intact, verified.Records, verified.FirstSeq, verified.AnchorHash));

        // A broken link after the first record kept is still found.
        await _log.DisposeAsync();
        var path = Path.Combine(_directory.Path, "audit-2026-11-29.log");
        File.WriteAllLines(path, File.ReadAllLines(path).Where((_, i) => i != 1));
        var altered = _log.Verify();
        Assert.Equal((false, "audit-2026-11-29.log", 2L, 5L), (altered.Intact, altered.File, altered.FirstBrokenLine, altered.FirstSeq));
    }

    [Fact]
    public async Task A_log_whose_every_file_was_archived_goes_on_after_the_last_record_archived()
    {
        await WriteDaysAsync(2, perDay: 2);
        await _log.DisposeAsync();
        var last = File.ReadLines(Path.Combine(_directory.Path, "audit-2026-11-29.log")).Last();
        foreach (var file in Files())
        {
            File.Move(Path.Combine(_directory.Path, file), Path.Combine(_directory.Path, file + ".archived"));
        }

        File.WriteAllText(Path.Combine(_directory.Path, AuditLog.AnchorFileName), last + "\n");
        _log = Open();

        var next = await _log.WriteAsync("dr-a", "clinician", "p-1", "GET /api/patients/p-1/live", 200);

        Assert.Equal(5, next.Seq);
        var verified = _log.Verify();
        Assert.Equal((true, 5L, 1L), (verified.Intact, verified.FirstSeq, verified.Records));
    }

    [Fact]
    public async Task A_record_torn_by_a_power_cut_is_listed_and_the_chain_goes_on_after_it()
    {
        await WriteDaysAsync(1, perDay: 2);
        await _log.DisposeAsync();
        var path = Path.Combine(_directory.Path, "audit-2026-11-28.log");
        File.AppendAllText(path, "{\"seq\":3,\"at\":\"2026-11-28T");
        _log = Open();

        var next = await _log.WriteAsync("dr-b", "clinician", "p-2", "GET /api/patients/p-2/live", 200);
        await _log.WriteAsync("dr-a", "clinician", "p-1", "GET /api/patients/p-1/live", 200);

        Assert.Equal(3, next.Seq);
        Assert.Equal(4, _log.Query(null, null, null, null, 10).Count);
        var verified = _log.Verify();
        Assert.True(verified.Intact);
        Assert.Equal(4, verified.Records);
        Assert.Equal(["audit-2026-11-28.log:3"], verified.Torn);
    }

    [Fact]
    public async Task A_record_replaced_by_garbage_breaks_the_chain_there()
    {
        await WriteDaysAsync(1, perDay: 4);
        var path = Path.Combine(_directory.Path, "audit-2026-11-28.log");
        var lines = File.ReadAllLines(path);
        lines[1] = "{\"seq\":2,";
        File.WriteAllLines(path, lines);

        var verified = _log.Verify();

        Assert.False(verified.Intact);
        Assert.Equal(2, verified.FirstBrokenLine);
    }

    [Theory]
    [InlineData("\"actor\":\"dr-a\"", "\"Actor\":\"dr-z\",\"actor\":\"dr-a\"")]
    [InlineData("\"status\":200", "\"status\":200,\"note\":\"fine\"")]
    [InlineData("\"status\":200", "\"status\":\"200\"")]
    public async Task A_record_that_reads_the_same_but_is_not_byte_for_byte_what_was_written_breaks_the_chain(string written, string altered)
    {
        await WriteDaysAsync(1, perDay: 3);
        var path = Path.Combine(_directory.Path, "audit-2026-11-28.log");
        var lines = File.ReadAllLines(path);
        Assert.Contains(written, lines[0]);
        lines[0] = lines[0].Replace(written, altered, StringComparison.Ordinal);
        File.WriteAllLines(path, lines);

        var verified = _log.Verify();

        Assert.False(verified.Intact);
        Assert.Equal(1, verified.FirstBrokenLine);
    }

    [Fact]
    public async Task A_restart_with_the_clock_behind_the_newest_file_keeps_writing_that_file()
    {
        await WriteDaysAsync(2, perDay: 2);
        await _log.DisposeAsync();
        var clock = new SettableClock { Now = Start };
        await using (var behind = new AuditLog(_directory.Options, clock, NullLogger<AuditLog>.Instance))
        {
            await behind.WriteAsync("dr-b", "clinician", "p-2", "GET /api/patients/p-2/live", 200);
        }

        _log = Open();
        var next = await _log.WriteAsync("dr-a", "clinician", "p-1", "GET /api/patients/p-1/live", 200);

        Assert.Equal(6, next.Seq);
        Assert.Equal(["audit-2026-11-28.log", "audit-2026-11-29.log"], Files());
        Assert.True(_log.Verify().Intact);
    }

    [Fact]
    public async Task A_query_reads_back_only_as_far_as_it_needs()
    {
        await WriteDaysAsync(3, perDay: 4);

        // An older day's file that cannot be opened: a query must not need it.
        using var locked = new FileStream(Path.Combine(_directory.Path, "audit-2026-11-28.log"), FileMode.Open, FileAccess.ReadWrite, FileShare.None);

        Assert.Equal([12L, 11, 10, 9, 8, 7], _log.Query(null, null, null, null, 6).Select(record => record.Seq));
        Assert.Equal([6L, 5], _log.Query(null, null, new DateTimeOffset(2026, 11, 29, 0, 0, 0, TimeSpan.Zero), null, 100).TakeLast(2).Select(record => record.Seq));
        Assert.ThrowsAny<IOException>(() => _log.Query(null, null, null, null, 9));
    }

    [Fact]
    public async Task Pages_from_before_a_record_hold_every_older_record_once_however_the_clock_stepped()
    {
        var clock = new SettableClock { Now = Start.AddDays(1) };
        await using var log = new AuditLog(_directory.Options, clock, NullLogger<AuditLog>.Instance);
        for (var i = 0; i < 7; i++)
        {
            // The clock steps back half an hour after the fourth record: the later three are stamped before it.
            clock.Now = i == 4 ? clock.Now.AddMinutes(-30) : clock.Now.AddMinutes(1);
            await log.WriteAsync("dr-a", "clinician", "p-1", "GET /api/patients/p-1/live", 200);
        }

        var paged = new List<long>();
        long? before = null;
        while (true)
        {
            var page = log.Query(null, null, null, null, 3, before);
            paged.AddRange(page.Select(record => record.Seq));
            if (page.Count < 3)
            {
                break;
            }

            before = page[^1].Seq;
        }

        Assert.Equal([7L, 6, 5, 4, 3, 2, 1], paged);
    }

    [Fact]
    public async Task A_query_up_to_a_time_does_not_read_the_files_of_later_days()
    {
        await WriteDaysAsync(4, perDay: 4);

        // A later day's file that cannot be opened (today's is the log's own): a query up to a day before must not need it.
        using var locked = new FileStream(Path.Combine(_directory.Path, "audit-2026-11-30.log"), FileMode.Open, FileAccess.ReadWrite, FileShare.None);

        Assert.Equal([4L, 3, 2, 1], _log.Query(null, null, null, new DateTimeOffset(2026, 11, 29, 0, 0, 0, TimeSpan.Zero), 100).Select(record => record.Seq));
    }

    [Fact]
    public async Task The_single_file_of_earlier_versions_is_the_oldest_part_of_the_chain()
    {
        await WriteDaysAsync(1, perDay: 2);
        await _log.DisposeAsync();
        File.Move(Path.Combine(_directory.Path, "audit-2026-11-28.log"), Path.Combine(_directory.Path, AuditLog.LegacyFileName));
        _time.Advance(TimeSpan.FromDays(1));
        _log = Open();

        await _log.WriteAsync("dr-b", "clinician", "p-2", "GET /api/patients/p-2/live", 200);

        Assert.True(_log.Verify().Intact);
        Assert.Equal([3L, 2, 1], _log.Query(null, null, null, null, 10).Select(record => record.Seq));
    }

    [Fact]
    public async Task A_clock_set_back_over_midnight_keeps_writing_the_newer_days_file()
    {
        var clock = new SettableClock { Now = Start.AddDays(1) };
        await using var log = new AuditLog(_directory.Options, clock, NullLogger<AuditLog>.Instance);
        await log.WriteAsync("dr-a", "clinician", "p-1", "GET /api/patients/p-1/live", 200);
        clock.Now = Start;

        await log.WriteAsync("dr-b", "clinician", "p-2", "GET /api/patients/p-2/live", 200);

        Assert.Equal(["audit-2026-11-29.log"], Files());
        Assert.Equal(2, File.ReadAllLines(Path.Combine(_directory.Path, "audit-2026-11-29.log")).Length);
        Assert.True(log.Verify().Intact);
    }

    /// <summary>A clock that can be set back, as an operator or NTP may do.</summary>
    private sealed class SettableClock : TimeProvider
    {
        public DateTimeOffset Now { get; set; }

        public override DateTimeOffset GetUtcNow() => Now;
    }

    private AuditLog Open() => new(_directory.Options, _time, NullLogger<AuditLog>.Instance);

    /// <summary>Writes <paramref name="perDay"/> records a day for <paramref name="days"/> days, alternating actors and patients.</summary>
    private async Task WriteDaysAsync(int days, int perDay)
    {
        var written = 0;
        for (var day = 0; day < days; day++)
        {
            _time.SetUtcNow(Start.AddDays(day).AddHours(1));
            for (var i = 0; i < perDay; i++, written++)
            {
                var patient = written % 2 == 0 ? "p-1" : "p-2";
                await _log.WriteAsync(written % 2 == 0 ? "dr-a" : "dr-b", "clinician", patient, $"GET /api/patients/{patient}/live", 200);
                _time.Advance(TimeSpan.FromMinutes(1));
            }
        }
    }

    private string[] Files() =>
        [.. Directory.GetFiles(_directory.Path, "audit-*.log").Select(Path.GetFileName).Order(StringComparer.Ordinal)!];
}
