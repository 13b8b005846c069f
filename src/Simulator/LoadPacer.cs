using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using Telemetry.Protos;

namespace Telemetry.Simulator;

/// <summary>
/// Paces every device on a lean connection (<see cref="MqttLoadConnection"/>, <see cref="GrpcLoadConnection"/>) from
/// one thread: about every millisecond it sends each device's batches that are due, as many as its window (and, over
/// gRPC, the server's flow control) allows. One thread and no timer per device keeps the generator's own cost per
/// message low.
/// </summary>
internal sealed class LoadPacer
{
    private readonly Lock _lock = new();
    private readonly List<Device> _devices = [];
    private Device[] _snapshot = [];
    private Thread? _thread;

    /// <summary>Paces <paramref name="device"/> until its stop token is cancelled; the returned task completes then.</summary>
    public Task Add(Device device)
    {
        device.Start(Stopwatch.GetTimestamp());
        lock (_lock)
        {
            _devices.Add(device);
            _snapshot = [.. _devices];
            if (_thread is null)
            {
                _thread = new Thread(Run) { IsBackground = true, Name = "load pacer" };
                _thread.Start();
            }
        }

        return device.Stopped;
    }

    private void Run()
    {
        while (true)
        {
            var devices = Volatile.Read(ref _snapshot);
            var now = Stopwatch.GetTimestamp();
            var stopped = false;
            foreach (var device in devices)
            {
                stopped |= !device.Pace(now);
            }

            if (stopped)
            {
                lock (_lock)
                {
                    _devices.RemoveAll(device => device.Stopped.IsCompleted);
                    _snapshot = [.. _devices];
                    if (_devices.Count == 0)
                    {
                        // The next device added starts a new thread: none is left waking with nothing to pace.
                        _thread = null;
                        return;
                    }
                }
            }

            Thread.Sleep(1);
        }
    }

    /// <summary>A lean connection as the pacer sees it.</summary>
    internal interface ISender
    {
        /// <summary>Batches sent and not yet answered.</summary>
        int InFlight { get; }

        /// <summary>Completes when the connection ends.</summary>
        Task Completion { get; }

        /// <summary>
        /// Sends the batch, valid only during the call, timed from <paramref name="intendedAt"/> (when it was due); false
        /// when the connection cannot take it now.
        /// </summary>
        bool TrySend(VitalBatch batch, int readings, long intendedAt);
    }

    /// <summary>An MQTT connection publishing to one device's topic.</summary>
    internal sealed class MqttSender(MqttLoadConnection connection, string deviceId) : ISender
    {
        private readonly byte[] _topic = Encoding.UTF8.GetBytes($"devices/{deviceId}/vitals");

        public int InFlight => connection.InFlight;

        public Task Completion => connection.Completion;

        public bool TrySend(VitalBatch batch, int readings, long intendedAt)
        {
            connection.Publish(_topic, batch, readings, intendedAt);
            return true;
        }
    }

    /// <summary>A gRPC call.</summary>
    internal sealed class GrpcSender(GrpcLoadConnection connection) : ISender
    {
        public int InFlight => connection.InFlight;

        public Task Completion => connection.Completion;

        public bool TrySend(VitalBatch batch, int readings, long intendedAt) => connection.TrySend(batch, readings, intendedAt);
    }

    /// <summary>One device's pace: a batch of <c>batch</c> readings every period, up to <c>window</c> waiting for their answers.</summary>
    internal sealed class Device(
        VirtualWearable wearable,
        ISender connection,
        FleetStatistics statistics,
        double readingsPerSecond,
        int batch,
        int window,
        AlertProbe? probe,
        CancellationToken stop)
    {
        private readonly TaskCompletionSource _stopped = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly double _intervalMs = 1_000 / readingsPerSecond;
        private readonly long _period = (long)(batch / readingsPerSecond * Stopwatch.Frequency);

        // The first batch at a random point of the first period, as independent devices' are: a fleet started together
        // would otherwise publish in step, all its batches in the same millisecond of every period.
        private readonly double _phase = Random.Shared.NextDouble();
        private long _next;
        private double _nextMs;
        private VitalBatch? _unsent;
        private long _unsentDue;

        public Task Stopped => _stopped.Task;

        /// <summary>Starts the device's pace from <paramref name="now"/>, its first batch due at its phase of a period.</summary>
        public void Start(long now)
        {
            _next = now + (long)(_phase * _period);

            // A batch holds readings already taken: the period that ends as it is sent.
            _nextMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() + ((_phase - 1) * batch * _intervalMs);
        }

        /// <summary>Publishes what is due by <paramref name="now"/>; false once the device has stopped.</summary>
        public bool Pace(long now)
        {
            if (_stopped.Task.IsCompleted)
            {
                return false;
            }

            if (stop.IsCancellationRequested || connection.Completion.IsCompleted)
            {
                _stopped.TrySetResult();
                return false;
            }

            try
            {
                while (now >= _next && connection.InFlight < window)
                {
                    // A batch holds readings already taken: the period that just ended.
                    // Encoded into the connection's buffer before the next is made: one reusable batch serves.
                    // A batch the connection cannot take now (the server's flow control) is kept, and tried again
                    // before another is made.
                    // Timed from when it was due, not when it went: a pacer running late (the generator shares the
                    // server's cores) or a full window is waiting a device does, and is part of its latency.
                    var next = _unsent ?? wearable.NextBatchReused((long)_nextMs, _intervalMs, batch);
                    var due = _unsent is null ? _next : _unsentDue;
                    probe?.Mark(next, due);
                    _unsent = connection.TrySend(next, batch, due) ? null : next;
                    if (_unsent is not null)
                    {
                        // Held for flow control: timed from when it was first due, however long that takes.
                        _unsentDue = due;
                        break;
                    }

                    statistics.Sent(batch);
                    _next += _period;
                    _nextMs += batch * _intervalMs;
                }

                // Behind by more than a period (a full window): the missed batches are not sent later in a burst. They
                // are not timed either, but they are not sent: a step short of its offered rate by them does not hold.
                if (now - _next > _period)
                {
                    var skipped = (now - _next) / _period;
                    _next += skipped * _period;
                    _nextMs += skipped * batch * _intervalMs;
                }
            }
            catch (Exception exception) when (exception is SocketException or ObjectDisposedException)
            {
                // The connection is gone; its receive loop ends too, and the device's run reports what had no answer.
                _stopped.TrySetResult();
                return false;
            }
            catch (Exception exception)
            {
                _stopped.TrySetException(exception);
                return false;
            }

            return true;
        }
    }
}
