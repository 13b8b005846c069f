using Telemetry.Testing;

namespace Telemetry.EndToEnd.Tests;

/// <summary>Settings that cannot work together are refused at start, with what to change.</summary>
public sealed class SettingsTests
{
    [Theory]
    [InlineData("30")]
    [InlineData("7")]
    public async Task Raw_readings_kept_no_longer_than_the_backfill_horizon_are_refused_at_start(string rawDays)
    {
        await using var server = new TelemetryServer(new Dictionary<string, string> { ["Telemetry__Retention__RawDays"] = rawDays });

        var refused = await Assert.ThrowsAsync<InvalidOperationException>(server.StartAsync);

        Assert.Contains("Telemetry:Retention:RawDays must be 0 (forever) or at least a day more than Telemetry:Ingest:BackfillHorizon", refused.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("Telemetry__Server__ListenAddress", "not-an-address", "ListenAddress")]
    [InlineData("Telemetry__Ingest__BackfillHorizon", "00:00:00", "Telemetry:Ingest:BackfillHorizon")]
    [InlineData("Telemetry__Ingest__MaxMessageBytes", "0", "Telemetry:Ingest:MaxMessageBytes: ")]
    [InlineData("Telemetry__Server__HttpPort", "eighty", "Telemetry:Server:HttpPort")]
    [InlineData("Telemetry__Auth__Jwt__Authority", "http://127.0.0.1:1/realms/ward", "Telemetry:Auth:Jwt:Authority: Authority is http://")]
    [InlineData("Telemetry__Auth__AdminToken", "an admin token with spaces", "The admin token must not hold spaces or control characters")]
    [InlineData("Telemetry__Alerts__Webhooks__0__Name", "ward", "Telemetry:Alerts:Webhooks:0:Secret: must be at least 16 characters")]
    [InlineData("Telemetry__Health__Delay", "-00:00:01", "Telemetry:Health:Delay must not be negative")]
    public async Task A_value_that_cannot_work_stops_the_start_naming_its_setting(string key, string value, string named)
    {
        await using var server = new TelemetryServer(new Dictionary<string, string> { [key] = value });

        var refused = await Assert.ThrowsAsync<InvalidOperationException>(server.StartAsync);

        // Told in a line that names the setting as it is configured, with exit code 2: not an unhandled exception.
        Assert.Contains(named, refused.Message, StringComparison.Ordinal);
        Assert.StartsWith("The server exited with 2:", refused.Message, StringComparison.Ordinal);
        Assert.Contains("Telemetry did not start:", refused.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("Unhandled exception", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_redis_connection_string_that_cannot_be_read_stops_the_start_naming_its_setting_not_its_secret()
    {
        await using var server = new TelemetryServer(new Dictionary<string, string>
        {
            ["Telemetry__Storage__RawStore"] = "VictoriaMetrics",
            ["Telemetry__Cluster__Redis"] = "127.0.0.1:6379,pasword=not-logged-1",
        });

        var refused = await Assert.ThrowsAsync<InvalidOperationException>(server.StartAsync);

        Assert.StartsWith("The server exited with 2:", refused.Message, StringComparison.Ordinal);
        Assert.Contains("Telemetry:Cluster:Redis is not a Redis connection string: Keyword 'pasword' is not supported", refused.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("Details:", refused.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("not-logged-1", refused.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("MqttPort", "(MQTT) is taken on 127.0.0.1 by another program")]
    [InlineData("HttpPort", "(HTTP: the API, FHIR and the dashboards) is taken on 127.0.0.1 by another program")]
    [InlineData("SiloPort", "(the Orleans silo's, between the servers of a cluster) is taken by another program")]
    public async Task A_port_another_program_holds_stops_the_start_naming_its_setting(string setting, string told)
    {
        await using var server = new TelemetryServer();
        var port = setting switch
        {
            "MqttPort" => server.MqttPort,
            "HttpPort" => server.HttpPort,
            _ => server.SiloPort,
        };
        var other = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, port);
        other.Start();
        try
        {
            var refused = await Assert.ThrowsAsync<InvalidOperationException>(server.StartAsync);

            // One line naming the setting and the port, not Kestrel's or Orleans' bare "Address already in use" and a stack.
            Assert.StartsWith("The server exited with 2:", refused.Message, StringComparison.Ordinal);
            Assert.Contains($"Telemetry did not start:\n  Telemetry:Server:{setting}: port {port} {told}", refused.Message.ReplaceLineEndings("\n"), StringComparison.Ordinal);
            Assert.DoesNotContain("Details:", refused.Message, StringComparison.Ordinal);
        }
        finally
        {
            other.Stop();
        }
    }

    [Fact]
    public async Task An_admin_token_configured_with_a_trailing_newline_signs_in_without_it()
    {
        var token = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(16));
        await using var mounted = new TelemetryServer(new Dictionary<string, string> { ["Telemetry__Auth__AdminToken"] = token + "\n" }, adminToken: token);
        await mounted.StartAsync();

        // Its Http client sends the token as a header carries it, without the newline.
        using var audit = await mounted.Http.GetAsync("/api/audit");

        Assert.Equal(System.Net.HttpStatusCode.OK, audit.StatusCode);
    }

    [Fact]
    public async Task A_database_another_server_has_open_stops_the_start_naming_its_setting()
    {
        await using var first = new TelemetryServer();
        await first.StartAsync();
        await using var second = new TelemetryServer(new Dictionary<string, string>
        {
            ["Telemetry__Storage__DuckDb__Path"] = Path.Combine(first.DataDirectory, "telemetry.duckdb"),
        });

        var refused = await Assert.ThrowsAsync<InvalidOperationException>(second.StartAsync);

        // A second server started on a folder in use (a `dotnet run` beside the service) hears which setting to change.
        Assert.StartsWith("The server exited with 2:", refused.Message, StringComparison.Ordinal);
        Assert.Contains("Telemetry:Storage:DuckDb:Path: the database", refused.Message, StringComparison.Ordinal);
        Assert.Contains("If another Telemetry server uses this data folder", refused.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("Details:", refused.Message, StringComparison.Ordinal);

        // The first goes on serving.
        using var health = await first.Http.GetAsync("/healthz");
        Assert.True(health.IsSuccessStatusCode);
    }

    [Fact]
    public async Task Two_listeners_given_one_port_are_refused_at_start()
    {
        var port = TestPorts.Free().ToString(System.Globalization.CultureInfo.InvariantCulture);
        await using var shared = new TelemetryServer(new Dictionary<string, string> { ["Telemetry__Server__HttpPort"] = port, ["Telemetry__Server__GrpcPort"] = port });

        var refused = await Assert.ThrowsAsync<InvalidOperationException>(shared.StartAsync);

        Assert.Contains("Telemetry:Server:HttpPort and Telemetry:Server:GrpcPort share port", refused.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("Details:", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_token_command_takes_the_servers_data_path_and_says_when_it_had_to_make_a_key()
    {
        var folder = Directory.CreateTempSubdirectory("token-command-");
        try
        {
            // Run from an empty folder, given the data path of a server that never ran: no key there yet, so one is made
            // there (not in ./data), and the person is told a running server elsewhere would refuse the token.
            var database = Path.Combine(folder.FullName, "server", "telemetry.duckdb");
            var first = await RunTokenCommandAsync(folder.FullName, "--role", "clinician", $"--Telemetry:Storage:DuckDb:Path={database}", "--sub", "dr-key");
            Assert.Equal(0, first.ExitCode);
            Assert.Contains("there was no development signing key at", first.Error, StringComparison.Ordinal);
            Assert.True(File.Exists(Path.Combine(folder.FullName, "server", "development-signing-key")));
            Assert.False(Directory.Exists(Path.Combine(folder.FullName, "data")));
            Assert.Equal(2, first.Output.Trim().Count(c => c == '.'));

            // With the key there, nothing to tell.
            var second = await RunTokenCommandAsync(folder.FullName, $"--Telemetry:Storage:DuckDb:Path={database}", "--role", "admin");
            Assert.Equal(0, second.ExitCode);
            Assert.DoesNotContain("development signing key", second.Error, StringComparison.Ordinal);
        }
        finally
        {
            folder.Delete(recursive: true);
        }
    }

    private static async Task<(int ExitCode, string Output, string Error)> RunTokenCommandAsync(string workingDirectory, params string[] arguments)
    {
        var start = new System.Diagnostics.ProcessStartInfo("dotnet", [TelemetryServer.ServerAssembly(), "token", .. arguments])
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        using var command = System.Diagnostics.Process.Start(start) ?? throw new InvalidOperationException("dotnet did not start");
        var output = command.StandardOutput.ReadToEndAsync();
        var error = command.StandardError.ReadToEndAsync();
        await command.WaitForExitAsync();
        return (command.ExitCode, await output, await error);
    }

    [Fact]
    public async Task An_admin_token_that_would_be_read_as_a_JWT_is_refused_at_start()
    {
        await using var server = new TelemetryServer(adminToken: "ops.admin.0123456789abcdef");

        var refused = await Assert.ThrowsAsync<InvalidOperationException>(server.StartAsync);

        Assert.Contains("must not hold exactly two '.'", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_secret_file_left_empty_by_a_crash_is_made_again()
    {
        await using var server = new TelemetryServer();
        await File.WriteAllTextAsync(Path.Combine(server.DataDirectory, "development-signing-key"), "");
        await server.StartAsync();

        using var patient = server.ClientWith(await server.MintTokenAsync("--role", "patient", "--patient", "p-secret-file"));
        Assert.Equal(System.Net.HttpStatusCode.OK, (await patient.GetAsync("/api/patients/p-secret-file/live")).StatusCode);
        Assert.NotEmpty(await File.ReadAllTextAsync(Path.Combine(server.DataDirectory, "development-signing-key")));
    }
}
