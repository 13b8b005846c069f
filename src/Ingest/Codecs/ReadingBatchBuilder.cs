using Telemetry.Core.Readings;
using Telemetry.Core.Vitals;

namespace Telemetry.Ingest.Codecs;

/// <summary>
/// Collects a payload's readings as a decoder finds them: resolves kind and unit, converts to the canonical unit,
/// validates, and counts what it refuses and why. A bad reading is counted and skipped; its neighbours stay.
/// Reusable: <see cref="Reset"/> before each payload. A builder kept between payloads (a gRPC stream's, an MQTT
/// thread's) gives back what one large payload made it grow to once a payload needs far less, so a stream open for
/// hours does not hold its largest backfill's memory.
/// </summary>
public sealed class ReadingBatchBuilder
{
    // What a builder keeps between payloads at most: 1,024 readings, 24 KB.
    internal const int KeptCapacity = 1024;

    private readonly int[] _rejects = new int[RejectReasonExtensions.Count];
    private readonly List<VitalReading> _quarantined = [];
    private VitalReading[] _readings = new VitalReading[64];
    private long _minTimestampMs;
    private long _maxTimestampMs;

    public ReadingBatchBuilder(ValidationLimits limits, TimeProvider timeProvider)
    {
        Limits = limits;
        TimeProvider = timeProvider;
        Reset();
    }

    public ValidationLimits Limits { get; }

    public TimeProvider TimeProvider { get; }

    /// <summary>The time relative SenML times and the validation window are taken from, fixed at <see cref="Reset"/>.</summary>
    public long NowMs { get; private set; }

    /// <summary>True when a reading's time was given relative to the payload's arrival (SenML's times below 2^28 s).</summary>
    public bool UsedRelativeTime { get; set; }

    /// <summary>The device's batch sequence number, when the payload carries one.</summary>
    public ulong Sequence { get; set; }

    public int Count { get; private set; }

    public int RejectedCount { get; private set; }

    /// <summary>Set when the payload holds more readings than <see cref="ValidationLimits.MaxReadingsPerBatch"/>.</summary>
    public bool Overflowed { get; private set; }

    public ReadOnlySpan<VitalReading> Readings => _readings.AsSpan(0, Count);

    /// <summary>Readings refused as implausible, kept to be stored in quarantine (counted among the rejects too).</summary>
    public IReadOnlyList<VitalReading> Quarantined => _quarantined;

    /// <summary>How many readings the builder has room for without growing (for tests).</summary>
    internal int Capacity => _readings.Length;

    public void Reset() => Reset(null);

    /// <summary>
    /// Empties the builder for a new batch, judged as of <paramref name="nowMs"/> (the clock's now when null): a
    /// payload sent again is read as of when it first came, so times relative to its arrival come out the same.
    /// </summary>
    public void Reset(long? nowMs)
    {
        if (_readings.Length > KeptCapacity && Count <= KeptCapacity / 2)
        {
            _readings = new VitalReading[KeptCapacity];
        }

        if (_quarantined.Count <= KeptCapacity / 2 && _quarantined.Capacity > KeptCapacity)
        {
            _quarantined.Clear();
            _quarantined.Capacity = KeptCapacity;
        }

        Count = 0;
        RejectedCount = 0;
        Sequence = 0;
        Overflowed = false;
        Array.Clear(_rejects);
        _quarantined.Clear();
        UsedRelativeTime = false;
        NowMs = nowMs ?? TimeProvider.GetUtcNow().ToUnixTimeMilliseconds();
        _minTimestampMs = NowMs - (long)Limits.BackfillHorizon.TotalMilliseconds;
        _maxTimestampMs = NowMs + (long)Limits.MaxFutureSkew.TotalMilliseconds;
    }

    /// <summary>Adds a reading named and united by UTF-8 bytes, as the JSON decoders find them.</summary>
    public void Add(ReadOnlySpan<byte> utf8Kind, ReadOnlySpan<byte> utf8Unit, long timestampMs, double value)
    {
        if (!VitalCatalogue.TryFind(utf8Kind, out var definition))
        {
            Reject(RejectReason.UnknownKind);
            return;
        }

        Add(definition, definition.FindUnit(utf8Unit), timestampMs, value);
    }

    /// <summary>Adds a reading whose kind and unit conversion are already resolved; a null unit means it was not recognised.</summary>
    public void Add(VitalDefinition definition, UnitConversion? unit, long timestampMs, double value)
    {
        if (Check(definition, unit, timestampMs, value, out var canonical) is { } reason)
        {
            Refuse(definition.Kind, reason, timestampMs, canonical);
            return;
        }

        if (HasRoomFor(1))
        {
            _readings[Count++] = new VitalReading(definition.Kind, timestampMs, canonical);
        }
    }

    /// <summary>
    /// Adds a panel's pair (a blood pressure's systolic and diastolic), kept or refused together: when either part is
    /// refused, or the first is not above the second (a cuff's pair sent reversed or garbled), neither is kept, so no
    /// half of a reading, and no diastolic filed as a systolic, joins the patient's series. Each part is counted as a
    /// reject for its own reason, or, refused only for its partner's, for that one; refused as implausible, a part is
    /// quarantined (a reversed pair, or one with a part out of range, quarantined whole).
    /// </summary>
    public void AddPair(VitalPanel panel, UnitConversion? firstUnit, UnitConversion? secondUnit, long timestampMs, double first, double second)
    {
        var firstRefused = Check(panel.First, firstUnit, timestampMs, first, out var firstCanonical);
        var secondRefused = Check(panel.Second, secondUnit, timestampMs, second, out var secondCanonical);
        if ((firstRefused ?? secondRefused ?? (firstCanonical > secondCanonical ? null : RejectReason.Implausible)) is { } refused)
        {
            Refuse(panel.First.Kind, firstRefused ?? refused, timestampMs, firstCanonical);
            Refuse(panel.Second.Kind, secondRefused ?? refused, timestampMs, secondCanonical);
            return;
        }

        if (HasRoomFor(2))
        {
            _readings[Count++] = new VitalReading(panel.First.Kind, timestampMs, firstCanonical);
            _readings[Count++] = new VitalReading(panel.Second.Kind, timestampMs, secondCanonical);
        }
    }

    /// <summary>Why a reading is refused, or null when it is kept; <paramref name="canonical"/> is its value in the vital's unit (NaN when it has none).</summary>
    private RejectReason? Check(VitalDefinition definition, UnitConversion? unit, long timestampMs, double value, out double canonical)
    {
        canonical = double.NaN;
        if (unit is null)
        {
            return RejectReason.UnknownUnit;
        }

        if (!double.IsFinite(value))
        {
            return RejectReason.MissingValue;
        }

        if (timestampMs > _maxTimestampMs)
        {
            return RejectReason.FutureTimestamp;
        }

        if (timestampMs < _minTimestampMs)
        {
            return RejectReason.TooOld;
        }

        canonical = unit.ToCanonical(value);
        return definition.IsPlausible(canonical) ? null : RejectReason.Implausible;
    }

    /// <summary>
    /// Counts a refused reading. One refused as implausible is kept apart, with its reason, for whoever looks into the
    /// device; never part of the patient's series. One that overflows in the conversion (1e308 kPa) is not kept: no
    /// store, JSON or line protocol holds infinity. More kept apart than a batch may hold overflow the batch, as more
    /// accepted ones do: the message is refused whole rather than some of them dropped unsaid.
    /// </summary>
    private void Refuse(VitalKind kind, RejectReason reason, long timestampMs, double canonical)
    {
        Reject(reason);
        if (reason == RejectReason.Implausible && double.IsFinite(canonical))
        {
            if (_quarantined.Count >= Limits.MaxReadingsPerBatch)
            {
                Overflowed = true;
                return;
            }

            _quarantined.Add(new VitalReading(kind, timestampMs, canonical));
        }
    }

    /// <summary>Whether <paramref name="readings"/> more fit the batch (growing it as needed); if not, the batch is marked overflowed.</summary>
    private bool HasRoomFor(int readings)
    {
        if (Count + readings > Limits.MaxReadingsPerBatch)
        {
            Overflowed = true;
            return false;
        }

        if (Count + readings > _readings.Length)
        {
            Array.Resize(ref _readings, Math.Min(Math.Max(_readings.Length * 2, Count + readings), Limits.MaxReadingsPerBatch));
        }

        return true;
    }

    public void Reject(RejectReason reason)
    {
        _rejects[(int)reason]++;
        RejectedCount++;
    }

    public int RejectedFor(RejectReason reason) => _rejects[(int)reason];

    /// <summary>The accepted readings, copied out so the builder can be reused.</summary>
    public VitalReading[] ToArray() => Readings.ToArray();

    /// <summary>The batch to commit for <paramref name="device"/>: the accepted readings and the quarantined ones.</summary>
    public DeviceBatch ToBatch(string deviceId, string patientId) =>
        new(deviceId, patientId, Sequence, ToArray()) { Quarantined = _quarantined.Count == 0 ? ReadOnlyMemory<VitalReading>.Empty : _quarantined.ToArray() };

    /// <summary>A sentence for the sender, such as "2 readings rejected: 1 unknown vital kind (or none given), 1 value outside the plausible range".</summary>
    public string? DescribeRejects()
    {
        if (RejectedCount == 0)
        {
            return null;
        }

        var parts = new List<string>();
        for (var i = 0; i < _rejects.Length; i++)
        {
            if (_rejects[i] > 0)
            {
                parts.Add($"{_rejects[i]} {((RejectReason)i).Describe()}");
            }
        }

        return $"{RejectedCount} reading{(RejectedCount == 1 ? "" : "s")} rejected: {string.Join(", ", parts)}";
    }
}
