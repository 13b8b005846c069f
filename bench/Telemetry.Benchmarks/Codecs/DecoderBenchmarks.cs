using System.Buffers;
using System.Globalization;
using System.Text;
using BenchmarkDotNet.Attributes;
using Google.Protobuf;
using Telemetry.Ingest.Codecs;
using Telemetry.Protos;

namespace Telemetry.Benchmarks.Codecs;

/// <summary>Decoding one 100-reading batch of heart rates in each payload format, validation included.</summary>
[MemoryDiagnoser]
public class DecoderBenchmarks
{
    private const int Readings = 100;

    private readonly ReadingBatchBuilder _batch = new(ValidationLimits.Default, TimeProvider.System);
    private ReadOnlySequence<byte> _protobuf;
    private ReadOnlySequence<byte> _json;
    private ReadOnlySequence<byte> _senMl;

    [GlobalSetup]
    public void Setup()
    {
        var start = DateTimeOffset.UtcNow.AddMinutes(-5);
        var series = new VitalSeries { Kind = "heart_rate", Unit = "/min" };
        var json = new StringBuilder("{\"seq\":1,\"readings\":[");
        var senMl = new StringBuilder().Append(CultureInfo.InvariantCulture, $"[{{\"bn\":\"watch-1:\",\"bt\":{start.ToUnixTimeSeconds()},\"bu\":\"beat/min\"}}");
        for (var i = 0; i < Readings; i++)
        {
            var value = 60 + (i % 40);
            series.TimeDeltasMs.Add(i == 0 ? 0 : 1_000);
            series.Values.Add(value);
            json.Append(CultureInfo.InvariantCulture, $"{(i == 0 ? "" : ",")}{{\"kind\":\"heart_rate\",\"time\":\"{start.AddSeconds(i):O}\",\"value\":{value}}}");
            senMl.Append(CultureInfo.InvariantCulture, $",{{\"n\":\"heart_rate\",\"t\":{i},\"v\":{value}}}");
        }

        _protobuf = new(new VitalBatch { Seq = 1, BaseTimeMs = start.ToUnixTimeMilliseconds(), Series = { series } }.ToByteArray());
        _json = new(Encoding.UTF8.GetBytes(json.Append("]}").ToString()));
        _senMl = new(Encoding.UTF8.GetBytes(senMl.Append(']').ToString()));
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = Readings)]
    public int Protobuf() => Decode(_protobuf);

    [Benchmark(OperationsPerInvoke = Readings)]
    public int Json() => Decode(_json);

    [Benchmark(OperationsPerInvoke = Readings)]
    public int SenMl() => Decode(_senMl);

    private int Decode(in ReadOnlySequence<byte> payload)
    {
        if (!PayloadDecoder.TryDecode(payload, _batch, out _, out var error) || _batch.Count != Readings)
        {
            throw new InvalidOperationException(error ?? $"decoded {_batch.Count} readings");
        }

        return _batch.Count;
    }
}
