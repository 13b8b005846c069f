using System.Net;
using System.Text.Json;

namespace Telemetry.EndToEnd.Tests;

/// <summary><c>/healthz</c> tells an operator why; anyone else, such as a probe from another host, the statuses alone.</summary>
public sealed class HealthTests
{
    [Fact]
    public async Task Each_checks_word_is_for_the_operator_and_the_statuses_for_anyone()
    {
        // Behind a proxy on loopback: a forwarded client is from elsewhere, whatever address the proxy connects from.
        await using var server = await TelemetryServer.StartNewAsync(new Dictionary<string, string>
        {
            ["Telemetry__Server__TrustedProxies__0"] = "127.0.0.1",
        });
        var clinicianToken = await server.MintTokenAsync("--role", "clinician", "--care-team", "health-ward");

        async Task<JsonElement> ChecksAsync(string? token, string? forwardedFor)
        {
            using var client = server.ClientWith(token);
            if (forwardedFor is not null)
            {
                client.DefaultRequestHeaders.Add("X-Forwarded-For", forwardedFor);
            }

            using var response = await client.GetAsync("/healthz");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.True(response.Headers.CacheControl?.NoStore, "an answer that depends on the caller may be cached");
            using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
            Assert.Equal("Healthy", body.RootElement.GetProperty("status").GetString());
            return body.RootElement.GetProperty("checks").GetProperty("store").Clone();
        }

        // On the server's machine, and an admin from anywhere: the word, which names the database file.
        Assert.StartsWith("DuckDB at ", (await ChecksAsync(null, null)).GetProperty("description").GetString());
        Assert.StartsWith("DuckDB at ", (await ChecksAsync(server.AdminToken, "203.0.113.9")).GetProperty("description").GetString());

        // Anyone else elsewhere, and anyone a proxy forwards, even as from the server's own machine: the status alone.
        foreach (var (token, forwardedFor) in new[] { (null, "203.0.113.9"), (clinicianToken, "203.0.113.9"), (null, "127.0.0.1"), ((string?)null, "127.0.0.1, 203.0.113.9") })
        {
            var store = await ChecksAsync(token, forwardedFor);
            Assert.Equal("Healthy", store.GetProperty("status").GetString());
            Assert.False(store.TryGetProperty("description", out _), "a caller from elsewhere was told the store's description");
        }
    }
}
