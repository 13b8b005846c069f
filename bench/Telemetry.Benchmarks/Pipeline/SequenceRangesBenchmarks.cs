using BenchmarkDotNet.Attributes;
using Telemetry.Storage.DuckDb;

namespace Telemetry.Benchmarks.Pipeline;

/// <summary>
/// What the sequence ledger's note of one committed batch costs, per batch: for a device that numbers its batches in
/// order (one range), and for one that numbers them by a clock, so that every batch opens a gap (its ranges full, the
/// oldest forgotten each time).
/// </summary>
[MemoryDiagnoser]
public class SequenceRangesBenchmarks
{
    private const int Batches = 1_000;
    private const ulong Start = 1_764_950_000_000;

    private readonly SequenceRanges _inOrder = new();
    private readonly SequenceRanges _clockNumbered = new();
    private ulong _next;

    [GlobalSetup]
    public void Setup()
    {
        for (ulong i = 0; i < SequenceRanges.MaxRanges; i++)
        {
            _inOrder.Add(Start + i);
            _clockNumbered.Add(Start + (i * 1_000));
        }

        _next = SequenceRanges.MaxRanges;
    }

    [Benchmark(OperationsPerInvoke = Batches)]
    public void InOrder()
    {
        for (var i = 0; i < Batches; i++)
        {
            _inOrder.Add(Start + _next + (ulong)i);
        }

        _next += Batches;
    }

    [Benchmark(OperationsPerInvoke = Batches)]
    public void ClockNumbered()
    {
        for (var i = 0; i < Batches; i++)
        {
            _clockNumbered.Add(Start + ((_next + (ulong)i) * 1_000));
        }

        _next += Batches;
    }
}
