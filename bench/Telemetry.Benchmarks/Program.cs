using BenchmarkDotNet.Running;
using Telemetry.Benchmarks.Trends;

// The trend query through the API against a loaded store:
//   dotnet run -c Release --project bench/Telemetry.Benchmarks -- trends [--patients 10000] [--days 30]
// Everything else runs non-interactively with a filter, e.g.:
//   dotnet run -c Release --project bench/Telemetry.Benchmarks -- --filter '*Decoder*'
if (args is ["trends", .. var options])
{
    return await TrendQueryBenchmark.RunAsync(options);
}

BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
return 0;
