using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace Telemetry.Ingest.Codecs;

/// <summary>
/// A protobuf batch's series while the decoder checks them: each one's kind and unit (UTF-8), time deltas and values,
/// in arrays one thread keeps from batch to batch. The arrays a very large batch grew (more than
/// <see cref="KeptReadings"/> numbers or <see cref="KeptSeries"/> series) are let go after it.
/// </summary>
internal sealed class SeriesScratch
{
    private const int KeptReadings = 16_384;
    private const int KeptSeries = 256;
    private const int KeptText = 4_096;

    private Series[] _series = new Series[8];
    private byte[] _text = new byte[256];
    private long[] _deltas = new long[256];
    private double[] _values = new double[256];
    private int _seriesCount;
    private int _textLength;
    private int _deltaCount;
    private int _valueCount;

    public ReadOnlySpan<Series> All => _series.AsSpan(0, _seriesCount);

    public ReadOnlySpan<byte> Kind(in Series series) => _text.AsSpan(series.KindStart, series.KindLength);

    public ReadOnlySpan<byte> Unit(in Series series) => _text.AsSpan(series.UnitStart, series.UnitLength);

    public ReadOnlySpan<long> Deltas(in Series series) => _deltas.AsSpan(series.DeltaStart, series.DeltaCount);

    public ReadOnlySpan<double> Values(in Series series) => _values.AsSpan(series.ValueStart, series.ValueCount);

    public void Clear()
    {
        _seriesCount = 0;
        _textLength = 0;
        _deltaCount = 0;
        _valueCount = 0;
    }

    /// <summary>Clears, and lets go of arrays a very large batch grew.</summary>
    public void Release()
    {
        Clear();
        if (_deltas.Length > KeptReadings)
        {
            _deltas = new long[256];
        }

        if (_values.Length > KeptReadings)
        {
            _values = new double[256];
        }

        if (_text.Length > KeptText)
        {
            _text = new byte[256];
        }

        if (_series.Length > KeptSeries)
        {
            _series = new Series[8];
        }
    }

    /// <summary>Starts the next series; what follows is added to it.</summary>
    public void BeginSeries()
    {
        if (_seriesCount == _series.Length)
        {
            Array.Resize(ref _series, _series.Length * 2);
        }

        _series[_seriesCount++] = new Series { DeltaStart = _deltaCount, ValueStart = _valueCount };
    }

    /// <summary>Sets the current series' kind; a later one replaces it, as in protobuf.</summary>
    public void SetKind(ReadOnlySpan<byte> utf8)
    {
        ref var series = ref Current;
        series.KindStart = AppendText(utf8);
        series.KindLength = utf8.Length;
    }

    public void SetUnit(ReadOnlySpan<byte> utf8)
    {
        ref var series = ref Current;
        series.UnitStart = AppendText(utf8);
        series.UnitLength = utf8.Length;
    }

    public void AddDelta(long delta)
    {
        if (_deltaCount == _deltas.Length)
        {
            Array.Resize(ref _deltas, _deltas.Length * 2);
        }

        _deltas[_deltaCount++] = delta;
        Current.DeltaCount++;
    }

    public void AddValue(double value)
    {
        if (_valueCount == _values.Length)
        {
            Array.Resize(ref _values, _values.Length * 2);
        }

        _values[_valueCount++] = value;
        Current.ValueCount++;
    }

    /// <summary>Adds packed little-endian doubles (a whole number of them).</summary>
    public void AddValues(ReadOnlySpan<byte> packed)
    {
        var count = packed.Length / sizeof(double);
        EnsureValues(count);
        var values = _values.AsSpan(_valueCount, count);
        if (BitConverter.IsLittleEndian)
        {
            MemoryMarshal.Cast<byte, double>(packed).CopyTo(values);
        }
        else
        {
            for (var i = 0; i < count; i++)
            {
                values[i] = BinaryPrimitives.ReadDoubleLittleEndian(packed[(i * sizeof(double))..]);
            }
        }

        _valueCount += count;
        Current.ValueCount += count;
    }

    private ref Series Current => ref _series[_seriesCount - 1];

    private void EnsureValues(int more)
    {
        if (_valueCount + more > _values.Length)
        {
            Array.Resize(ref _values, Math.Max(_values.Length * 2, _valueCount + more));
        }
    }

    private int AppendText(ReadOnlySpan<byte> utf8)
    {
        EnsureText(utf8.Length);
        var start = _textLength;
        utf8.CopyTo(_text.AsSpan(start));
        _textLength += utf8.Length;
        return start;
    }

    private void EnsureText(int more)
    {
        if (_textLength + more > _text.Length)
        {
            Array.Resize(ref _text, Math.Max(_text.Length * 2, _textLength + more));
        }
    }

    /// <summary>Where one series' parts are in the scratch arrays.</summary>
    internal struct Series
    {
        public int KindStart;
        public int KindLength;
        public int UnitStart;
        public int UnitLength;
        public int DeltaStart;
        public int DeltaCount;
        public int ValueStart;
        public int ValueCount;
    }
}
