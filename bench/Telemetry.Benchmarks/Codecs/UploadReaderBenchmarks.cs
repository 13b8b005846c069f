using System.Buffers;
using System.Globalization;
using System.Text;
using BenchmarkDotNet.Attributes;
using Google.Protobuf;
using Telemetry.Ingest.Codecs;
using Telemetry.Protos;

namespace Telemetry.Benchmarks.Codecs;

/// <summary>
/// Reading a 10,000-reading bulk upload as it arrives from the request pipe (4 KiB segments), in batches of 5,000 as
/// the HTTP endpoint commits them, validation included.
/// </summary>
[MemoryDiagnoser]
public class UploadReaderBenchmarks
{
    private const int Readings = 10_000;
    private const int SegmentBytes = 4_096;

    private readonly ReadingBatchBuilder _batch = new(new ValidationLimits(TimeSpan.FromMinutes(10), TimeSpan.FromDays(30), 40_000), TimeProvider.System);
    private ReadOnlySequence<byte> _senMl;
    private ReadOnlySequence<byte> _ndJson;
    private ReadOnlySequence<byte> _protobuf;

    [Params(UploadFormat.SenMl, UploadFormat.NdJson, UploadFormat.DelimitedProtobuf)]
    public UploadFormat Format { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var start = DateTimeOffset.UtcNow.AddDays(-1);
        var senMl = new StringBuilder().Append(CultureInfo.InvariantCulture, $"[{{\"bn\":\"phone:\",\"bt\":{start.ToUnixTimeSeconds()},\"bu\":\"beat/min\"}}");
        var ndJson = new StringBuilder();
        using var protobuf = new MemoryStream();
        for (var i = 0; i < Readings; i++)
        {
            var value = 60 + (i % 40);
            senMl.Append(CultureInfo.InvariantCulture, $",{{\"n\":\"heart_rate\",\"t\":{i},\"v\":{value}}}");
            ndJson.Append(CultureInfo.InvariantCulture, $"{{\"kind\":\"heart_rate\",\"time\":\"{start.AddSeconds(i):O}\",\"value\":{value}}}\n");
        }

        for (var i = 0; i < Readings; i += 100)
        {
            var series = new VitalSeries { Kind = "heart_rate" };
            series.TimeDeltasMs.Add(Enumerable.Range(0, 100).Select(j => j == 0 ? 0L : 1_000L));
            series.Values.Add(Enumerable.Range(0, 100).Select(j => 60.0 + ((i + j) % 40)));
            new VitalBatch { BaseTimeMs = start.AddSeconds(i).ToUnixTimeMilliseconds(), Series = { series } }.WriteDelimitedTo(protobuf);
        }

        _senMl = Segmented(Encoding.UTF8.GetBytes(senMl.Append(']').ToString()));
        _ndJson = Segmented(Encoding.UTF8.GetBytes(ndJson.ToString()));
        _protobuf = Segmented(protobuf.ToArray());
    }

    [Benchmark(OperationsPerInvoke = Readings)]
    public int Read()
    {
        var buffer = Format switch
        {
            UploadFormat.SenMl => _senMl,
            UploadFormat.NdJson => _ndJson,
            _ => _protobuf,
        };

        var reader = new UploadStreamReader(Format, readingsPerBatch: 5_000, maxRecordBytes: 256 * 1024);
        var total = 0;
        _batch.Reset();
        while (true)
        {
            var status = reader.Read(buffer, isFinalBlock: true, _batch, out var consumed);
            buffer = buffer.Slice(consumed);
            total += _batch.Count;
            _batch.Reset();
            if (status == UploadReadStatus.Completed)
            {
                return total == Readings ? total : throw new InvalidOperationException($"read {total} readings");
            }

            if (status == UploadReadStatus.Malformed)
            {
                throw new InvalidOperationException(reader.Error);
            }
        }
    }

    private static ReadOnlySequence<byte> Segmented(byte[] bytes)
    {
        Segment? first = null, last = null;
        for (var offset = 0; offset < bytes.Length; offset += SegmentBytes)
        {
            var memory = bytes.AsMemory(offset, Math.Min(SegmentBytes, bytes.Length - offset));
            last = last is null ? first = new Segment(memory, 0) : last.Append(memory);
        }

        return new ReadOnlySequence<byte>(first!, 0, last!, last!.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long runningIndex)
        {
            Memory = memory;
            RunningIndex = runningIndex;
        }

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }
}
