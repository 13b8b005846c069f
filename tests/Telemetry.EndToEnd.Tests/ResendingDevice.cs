using MQTTnet;
using Xunit.Abstractions;

namespace Telemetry.EndToEnd.Tests;

/// <summary>
/// A device that keeps a ledger: it sends its batches in order, each until it is acked, connecting again whenever its
/// connection is gone or an ack does not come. After each reconnect it first sends its last three acked batches again,
/// as a device that missed its acks would; they must be acked and not stored twice. Batch n holds
/// <see cref="ReadingsPerBatch"/> heart rates one second apart, from <see cref="Start"/> on.
/// </summary>
internal sealed class ResendingDevice(string deviceId, string patientId, string token, DateTimeOffset start, int batches, int readingsPerBatch)
{
    public string DeviceId { get; } = deviceId;

    public string PatientId { get; } = patientId;

    public string Token { get; } = token;

    public DateTimeOffset Start { get; } = start;

    public int Batches { get; } = batches;

    public int ReadingsPerBatch { get; } = readingsPerBatch;

    /// <summary>Every heart rate it sends; each is stored once.</summary>
    public int Readings => Batches * ReadingsPerBatch;

    /// <summary>A moment after its last reading.</summary>
    public DateTimeOffset End => Start.AddSeconds(Readings).AddMinutes(1);

    /// <summary>The heart rates of batch n (from 1); by default a slow sweep from 60 to 99.</summary>
    public Func<int, double[]> HeartRates { get; init; } = seq => [.. Enumerable.Range(0, readingsPerBatch).Select(i => 60.0 + ((seq + i) % 40))];

    /// <summary>Awaited before batch n (from 1) is first sent, to hold a device at a point of the test.</summary>
    public Func<int, Task> BeforeBatch { get; init; } = _ => Task.CompletedTask;

    public int Acked { get; private set; }

    public int Resent { get; private set; }

    public int Refused { get; private set; }

    /// <summary>How the server ended each of its connections: the reason of its DISCONNECT, or NormalDisconnection for a bare close.</summary>
    public IReadOnlyList<MqttClientDisconnectReason> Disconnects
    {
        get
        {
            lock (_disconnects)
            {
                return [.. _disconnects];
            }
        }
    }

    private readonly List<MqttClientDisconnectReason> _disconnects = [];

    /// <summary>The server's answers to publishes it refused: reason code and reason string.</summary>
    public IReadOnlyList<string> Refusals
    {
        get
        {
            lock (_refusals)
            {
                return [.. _refusals];
            }
        }
    }

    private readonly List<string> _refusals = [];

    // Set once the current connection's end has been reported (see Disconnected).
    private TaskCompletionSource _connectionEnded = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public async Task SendAllAsync(Func<Task<IMqttClient>> connect, CancellationToken cancellationToken)
    {
        IMqttClient? client = null;
        var connections = 0;
        try
        {
            while (Acked < Batches)
            {
                cancellationToken.ThrowIfCancellationRequested();
                try
                {
                    if (client is not { IsConnected: true })
                    {
                        client?.Dispose();
                        client = null;
                        _connectionEnded = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                        client = await connect();
                        client.DisconnectedAsync += Disconnected;
                        if (connections++ > 0)
                        {
                            for (var seq = Math.Max(1, Acked - 2); seq <= Acked; seq++)
                            {
                                await PublishAsync(client, seq);
                                Resent++;
                            }
                        }
                    }

                    await BeforeBatch(Acked + 1);
                    await PublishAsync(client, Acked + 1);
                    Acked++;
                    await Task.Delay(15, cancellationToken);
                }
                catch (Exception exception) when (exception is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
                {
                    // The server died, the connection was cut, or the ack never came: no ack, so it is sent again. The
                    // client reports how its connection ended a moment after the publish fails; disposed first, it would
                    // report the device's own end instead, so it is given that moment (5 s at most: on a busy machine,
                    // with other tests' servers running, a second was once not enough).
                    Refused++;
                    if (client is not null)
                    {
                        await Task.WhenAny(_connectionEnded.Task, Task.Delay(5_000, cancellationToken));
                    }

                    client?.Dispose();
                    client = null;
                    await Task.Delay(100, cancellationToken);
                }
            }
        }
        finally
        {
            client?.Dispose();
        }
    }

    public override string ToString() =>
        $"{DeviceId}: {Acked} batches acked, {Resent} resends, {Refused} publishes without an ack; refused: [{string.Join(", ", Refusals)}]; connections ended: [{string.Join(", ", Disconnects)}]";

    /// <summary>Asserts that the server holds every reading this device sent exactly once, after writing how it went.</summary>
    public async Task AssertStoredOnceAsync(TelemetryServer server, ITestOutputHelper output, string? label = null)
    {
        output.WriteLine(label is null ? ToString() : $"{label}: {this}");
        var rows = await server.RawHeartRatesAsync(PatientId, Start, End);
        Assert.Equal(Readings, rows.Count);
        Assert.Equal(rows.Count, rows.Distinct().Count());
    }

    private Task Disconnected(MqttClientDisconnectedEventArgs args)
    {
        // Only connections that were up get this handler. The device's own end of one (disposing it to connect again) is
        // not the server's word; a bare close from the server comes with the exception that saw it.
        if (args.Reason != MqttClientDisconnectReason.NormalDisconnection || args.Exception is not null)
        {
            lock (_disconnects)
            {
                _disconnects.Add(args.Reason);
            }
        }

        _connectionEnded.TrySetResult();
        return Task.CompletedTask;
    }

    private async Task PublishAsync(IMqttClient client, int seq)
    {
        var ack = await Devices.PublishAsync(client, $"devices/{DeviceId}/vitals",
            Devices.JsonHeartRates((ulong)seq, Start.AddSeconds((seq - 1) * ReadingsPerBatch), HeartRates(seq)));
        if (ack.ReasonCode != MqttClientPublishReasonCode.Success)
        {
            lock (_refusals)
            {
                _refusals.Add($"{ack.ReasonCode} {ack.ReasonString}");
            }

            throw new InvalidOperationException($"batch {seq} of {DeviceId} refused: {ack.ReasonCode} {ack.ReasonString}");
        }
    }
}
