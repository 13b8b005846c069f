using System.Buffers;

namespace Telemetry.Core.Readings;

/// <summary>
/// A patient's committed readings from one ingest flush: the argument of the one grain call per patient per flush.
/// <see cref="CommitId"/> is the raw store's number for the commit that stored them. <see cref="Implausible"/> are the
/// readings the same batches had quarantined as implausible: never part of the series, but a sign of a faulty sensor.
/// </summary>
/// <remarks>
/// A flush that holds several of the patient's batches hands their arrays over as they are, the first as
/// <see cref="Readings"/> and the others as <see cref="MoreReadings"/>, rather than copied into one: a device streaming
/// fast has thousands of readings in a flush, and one array of them would be a large object, each one a step towards
/// a full garbage collection. <see cref="All"/> goes through every one of them, in order.
/// </remarks>
[GenerateSerializer, Immutable]
public sealed record PatientReadings(long CommitId, VitalReading[] Readings, VitalReading[]? Implausible = null)
{
    /// <summary>
    /// When the earliest of the batches these readings came in was handed to the ingest pipeline (before its commit),
    /// if known: what an alert these readings raise or clear is timed from (<c>telemetry_alerts_delay_seconds</c>).
    /// </summary>
    [Id(3)]
    public DateTimeOffset? HandedOverAt { get; init; }

    /// <summary>The readings of the flush's further batches for the patient, after <see cref="Readings"/>; null when none.</summary>
    [Id(4)]
    public VitalReading[][]? MoreReadings { get; init; }

    /// <summary>Every reading: <see cref="Readings"/>, then each of <see cref="MoreReadings"/>.</summary>
    public AllReadings All => new(this);

    /// <summary>The readings of <see cref="Readings"/> and <see cref="MoreReadings"/>, enumerated without allocating.</summary>
    public readonly struct AllReadings(PatientReadings readings)
    {
        public Enumerator GetEnumerator() => new(readings);

        /// <summary>
        /// Every reading in time order (those at the same time in the order they came), in arrays rented from the shared
        /// pool: dispose it to give them back. Nothing is allocated once the pool holds arrays of the size.
        /// </summary>
        public TimeOrdered ToTimeOrder()
        {
            var count = 0;
            foreach (var _ in this)
            {
                count++;
            }

            var all = ArrayPool<VitalReading>.Shared.Rent(count);
            var order = ArrayPool<int>.Shared.Rent(count);
            var i = 0;
            foreach (var reading in this)
            {
                order[i] = i;
                all[i++] = reading;
            }

            // By time, then by the order they came: a total order, so the sort (not stable by itself) keeps that order.
            order.AsSpan(0, count).Sort(new ByTime(all));
            return new TimeOrdered(all, order, count);
        }

        public struct Enumerator(PatientReadings readings)
        {
            private VitalReading[] _part = readings.Readings;
            private int _nextPart;
            private int _index = -1;

            public readonly VitalReading Current => _part[_index];

            public bool MoveNext()
            {
                while (++_index >= _part.Length)
                {
                    if (readings.MoreReadings is not { } more || _nextPart >= more.Length)
                    {
                        _index = _part.Length;
                        return false;
                    }

                    _part = more[_nextPart++];
                    _index = -1;
                }

                return true;
            }
        }
    }

    /// <summary>A patient's readings in time order (<see cref="AllReadings.ToTimeOrder"/>); disposing it gives its arrays back to the pool.</summary>
    public readonly struct TimeOrdered(VitalReading[] all, int[] order, int count) : IDisposable
    {
        public int Count => count;

        public VitalReading this[int index] => index < count ? all[order[index]] : throw new ArgumentOutOfRangeException(nameof(index));

        public void Dispose()
        {
            ArrayPool<VitalReading>.Shared.Return(all);
            ArrayPool<int>.Shared.Return(order);
        }
    }

    private readonly struct ByTime(VitalReading[] all) : IComparer<int>
    {
        public int Compare(int a, int b) =>
            all[a].TimestampMs != all[b].TimestampMs ? all[a].TimestampMs.CompareTo(all[b].TimestampMs) : a.CompareTo(b);
    }
}
