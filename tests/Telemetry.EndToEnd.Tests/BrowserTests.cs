using System.Diagnostics;

namespace Telemetry.EndToEnd.Tests;

/// <summary>
/// The pages in a real browser: Debian's Chromium, driven by playwright-core (installed from npm by the test build),
/// through the scenarios in <c>browser/</c>. Each saves screenshots of what it saw in TestResults/screenshots.
/// </summary>
public sealed class BrowserTests(BrowserFixture fixture) : IClassFixture<BrowserFixture>
{
    private const string Chromium = "/usr/bin/chromium";

    [Fact]
    public Task A_clinician_sees_a_new_reading_arrive_without_reloading() => RunAsync("clinician-live.mjs");

    [Fact]
    public Task A_clinician_opens_a_patients_trends_with_thresholds_and_changes_the_range() => RunAsync("clinician-trend.mjs");

    [Fact]
    public Task A_clinician_acknowledges_an_alert_by_keyboard_and_it_leaves_the_inbox() => RunAsync("clinician-ack.mjs");

    [Fact]
    public Task A_patient_sees_their_progress_and_not_another_patients_page() => RunAsync("patient-own-only.mjs");

    [Fact]
    public Task A_clinician_whose_token_only_reads_is_offered_nothing_to_act_with() => RunAsync("reader-no-actions.mjs");

    [Fact]
    public Task A_clinician_is_told_when_live_updates_pause_and_when_an_action_fails_and_a_patient_off_the_team_leaves_the_list() => RunAsync("clinician-offline.mjs");

    private async Task RunAsync(string scenario)
    {
        Assert.True(File.Exists(Chromium), $"Chromium is not at {Chromium}: install Debian's package (apt-get install chromium); .ci/run does.");
        var root = TelemetryServer.RepositoryRoot();
        var start = new ProcessStartInfo("node", [scenario])
        {
            WorkingDirectory = Path.Combine(root, "tests", "Telemetry.EndToEnd.Tests", "browser"),
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.Environment["TELEMETRY_URL"] = $"http://127.0.0.1:{fixture.Server.HttpPort}";
        start.Environment["CLINICIAN_TOKEN"] = fixture.ClinicianToken;
        start.Environment["PATIENT_TOKEN"] = fixture.PatientToken;
        start.Environment["READER_TOKEN"] = fixture.ReaderToken;
        start.Environment["DEVICE_TOKEN"] = fixture.DeviceToken;
        start.Environment["ADMIN_TOKEN"] = fixture.Server.AdminToken;
        start.Environment["SCREENSHOTS"] = Path.Combine(root, "TestResults", "screenshots");
        start.Environment["CHROMIUM"] = Chromium;

        using var node = Process.Start(start) ?? throw new InvalidOperationException("node did not start");
        var output = node.StandardOutput.ReadToEndAsync();
        var error = node.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        try
        {
            await node.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            node.Kill(entireProcessTree: true);
            Assert.Fail($"{scenario} took more than 2 minutes:\n{await output}\n{await error}");
        }

        Assert.True(node.ExitCode == 0, $"{scenario} failed:\n{await output}\n{await error}");
    }
}
