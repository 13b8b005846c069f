extern alias simulator;

using Google.Protobuf;
using simulator::Telemetry.Simulator;
using Xunit;
using SimulatorProtos = simulator::Telemetry.Protos;

namespace Telemetry.EndToEnd.Tests;

/// <summary>
/// The load benchmark's minimal gRPC client against the real server: what it counts as acknowledged must be what the
/// server acknowledged, or the benchmark's figures mean nothing.
/// </summary>
public sealed class GrpcLoadConnectionTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private TelemetryServer Server => fixture.Server;

    [Fact]
    public async Task Every_batch_is_matched_to_its_ack_and_its_readings_are_stored()
    {
        var token = await Server.ProvisionAsync("grpc-load-watch", "p-grpc-load-1");
        using var connection = await GrpcLoadConnection.ConnectAsync("127.0.0.1", Server.GrpcPort, token, maxInFlight: 100, CancellationToken.None);
        var acked = new List<(int Readings, SimulatorProtos.AckStatus Status, uint Accepted)>();
        connection.Acked = (readings, _, _, ack) =>
        {
            lock (acked)
            {
                acked.Add((readings, ack.Status, ack.Accepted));
            }
        };

        // Sixty one-reading batches, one a second over a minute, all in flight at once; then one batch of 4,000 readings
        // 10 ms apart the minute after, larger than an HTTP/2 frame, so it goes in several.
        var start = Devices.RecentMinute();
        for (var i = 0; i < 60; i++)
        {
            Assert.True(connection.TrySend(Batch((ulong)i + 1, start.AddSeconds(i), [60 + i]), readings: 1));
        }

        var large = Batch(61, start.AddMinutes(1), [.. Enumerable.Repeat(80.0, 4_000)], deltaMs: 10);
        Assert.True(large.CalculateSize() > 16_384);
        Assert.True(connection.TrySend(large, readings: 4_000));

        Assert.True(await connection.DrainAsync(TimeSpan.FromSeconds(30)), $"{connection.InFlight} batches had no answer");
        Assert.Equal(61, acked.Count);
        Assert.All(acked, ack => Assert.Equal(SimulatorProtos.AckStatus.Committed, ack.Status));
        Assert.Equal(4_060, acked.Sum(ack => ack.Readings));
        Assert.Equal(4_060u, (uint)acked.Sum(ack => ack.Accepted));
        var minute = Assert.Single((await Server.TrendAsync("p-grpc-load-1", "heart_rate", start, start.AddMinutes(1), count: 60)).Points);
        Assert.Equal(60, minute.Count);
        Assert.Equal(89.5, minute.Mean);
        var next = Assert.Single((await Server.TrendAsync("p-grpc-load-1", "heart_rate", start.AddMinutes(1), start.AddMinutes(2), count: 60)).Points);
        Assert.Equal(4_000, next.Count);
    }

    [Fact]
    public async Task A_refused_batch_reports_the_servers_status_and_reason()
    {
        var token = await Server.ProvisionAsync("grpc-load-empty", "p-grpc-load-2");
        using var connection = await GrpcLoadConnection.ConnectAsync("127.0.0.1", Server.GrpcPort, token, maxInFlight: 10, CancellationToken.None);
        var acks = new List<SimulatorProtos.IngestAck>();
        connection.Acked = (_, _, _, ack) =>
        {
            lock (acks)
            {
                acks.Add(ack);
            }
        };

        Assert.True(connection.TrySend(new SimulatorProtos.VitalBatch { Seq = 1 }, readings: 0));

        Assert.True(await connection.DrainAsync(TimeSpan.FromSeconds(10)));
        var ack = Assert.Single(acks);
        Assert.Equal(SimulatorProtos.AckStatus.Rejected, ack.Status);
        Assert.NotEmpty(ack.Reason);
    }

    [Fact]
    public async Task A_wrong_token_ends_the_call_with_its_grpc_status()
    {
        await Server.ProvisionAsync("grpc-load-wrong", "p-grpc-load-3");
        using var connection = await GrpcLoadConnection.ConnectAsync("127.0.0.1", Server.GrpcPort, "grpc-load-wrong." + new string('a', 64), maxInFlight: 1, CancellationToken.None);

        var ended = await Assert.ThrowsAsync<InvalidOperationException>(() => connection.Completion.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Contains("grpc-status 16", ended.Message); // unauthenticated
    }

    private static SimulatorProtos.VitalBatch Batch(ulong seq, DateTimeOffset start, double[] values, int deltaMs = 1_000)
    {
        var series = new SimulatorProtos.VitalSeries { Kind = "heart_rate", Unit = "beat/min" };
        for (var i = 0; i < values.Length; i++)
        {
            series.TimeDeltasMs.Add(i == 0 ? 0 : deltaMs);
            series.Values.Add(values[i]);
        }

        return new SimulatorProtos.VitalBatch { Seq = seq, BaseTimeMs = start.ToUnixTimeMilliseconds(), Series = { series } };
    }
}
